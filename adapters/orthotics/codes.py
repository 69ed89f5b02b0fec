"""The codes of a foot-orthosis order, published as CodeSystems and ValueSets.

- `ORTHOSIS_PARAMETER`: the codes of `DeviceRequest.parameter[]`, the prescriber's design
  characteristics, each with its unit and allowed range or value set (`PARAMETERS`);
- `FOOT_MEASUREMENT`: foot measurement Observations (UCUM mm) for orders without a scan;
- `ORTHOSIS_DEVICE`: the ordered device (a custom foot orthosis), coded beside HCPCS L3030
  ("Foot, insert, removable, formed to patient foot, each"). No SNOMED CT concept for a
  custom foot orthosis was verified, so none is claimed.

The numeric ranges and the processes come from `parameters.py` (the geometry's own limits,
so a value an order may hold is one the design can build); the terminology
service serves these resources ($lookup, $validate-code, $expand) like the R4 core content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.orthotics import parameters

BASE = "urn:fhir-server:"
ORTHOSIS_PARAMETER = BASE + "CodeSystem:orthosis-parameter"
FOOT_MEASUREMENT = BASE + "CodeSystem:foot-measurement"
ORTHOSIS_DEVICE = BASE + "CodeSystem:orthosis-device"
ORTHOSIS_VALUE = BASE + "CodeSystem:orthosis-value"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
UCUM = "http://unitsofmeasure.org"
CUSTOM_FOOT_ORTHOSIS = "custom-foot-orthosis"
HCPCS_CUSTOM_INSERT = "L3030"


@dataclass(frozen=True, slots=True)
class Code:
    """One parameter (or measurement) code: a number in `unit` within [low, high], or one of
    `values`; the numeric ranges are those of `parameters.py`."""

    code: str
    display: str
    unit: str | None = None  # UCUM: "mm" or "deg"
    low: float | None = None
    high: float | None = None
    values: tuple[tuple[str, str], ...] = ()  # (code, display) in ORTHOSIS_VALUE
    required: bool = False
    default: float | None = None

    def range_text(self) -> str:
        if self.values:
            return "one of " + ", ".join(code for code, _ in self.values)
        return f"{self.low:g} to {self.high:g} {self.unit}"


def _numeric(p: parameters.Parameter) -> Code:
    return Code(p.code, p.display, p.unit, p.minimum, p.maximum, default=p.default)


PROCESSES = tuple((code, spec.display) for code, spec in parameters.PROCESSES.items())
SIDES = (("left", "Left foot"), ("right", "Right foot"), ("pair", "Both feet (a pair)"))
EXTENSIONS = tuple(parameters.FOREFOOT_EXTENSIONS.items())
LATERALITY = "laterality"
PROCESS = parameters.PROCESS_CODE
FOREFOOT_EXTENSION = parameters.FOREFOOT_EXTENSION_CODE

PARAMETERS: tuple[Code, ...] = (
    Code(LATERALITY, "Laterality", values=SIDES, required=True),
    Code(PROCESS, "Material and print process", values=PROCESSES, required=True),
    *(_numeric(p) for p in parameters.NUMERIC),
    Code(FOREFOOT_EXTENSION, "Forefoot extension", values=EXTENSIONS),
)
BY_CODE = {p.code: p for p in PARAMETERS}

_MEASURED = (
    ("foot-length", "Foot length", "foot_length_mm"),
    ("ball-width", "Ball width", "ball_width_mm"),
    ("heel-width", "Heel width", "heel_width_mm"),
    ("arch-height", "Arch height", "arch_height_mm"),
)
MEASUREMENTS: tuple[Code, ...] = tuple(
    Code(code, display, "mm", *parameters.MEASUREMENT_RANGES[key], required=True)
    for code, display, key in _MEASURED
)
MEASUREMENT_BY_CODE = {p.code: p for p in MEASUREMENTS}
MEASUREMENT_FIELD = {code: key for code, _, key in _MEASURED}  # -> FootMeasurements field


def _code_system(url: str, id: str, title: str, concepts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": id,
        "url": url,
        "version": "1",
        "name": title.replace(" ", ""),
        "title": title,
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "concept": concepts,
    }


def _value_set(id: str, title: str, system: str, codes: list[str] | None) -> dict[str, Any]:
    include: dict[str, Any] = {"system": system}
    if codes is not None:
        include["concept"] = [{"code": code} for code in codes]
    return {
        "resourceType": "ValueSet",
        "id": id,
        "url": f"{BASE}ValueSet:{id}",
        "version": "1",
        "name": title.replace(" ", ""),
        "title": title,
        "status": "active",
        "compose": {"include": [include]},
    }


def _concept(p: Code) -> dict[str, Any]:
    definition = f"{p.display}: {p.range_text()}" + (" (required)" if p.required else "")
    return {"code": p.code, "display": p.display, "definition": definition}


def content() -> list[dict[str, Any]]:
    """Every CodeSystem and ValueSet of foot-orthosis orders."""
    values = [c for p in PARAMETERS for c in p.values]
    resources = [
        _code_system(
            ORTHOSIS_PARAMETER,
            "orthosis-parameter",
            "Orthosis parameter",
            [_concept(p) for p in PARAMETERS],
        ),
        _code_system(
            ORTHOSIS_VALUE,
            "orthosis-value",
            "Orthosis parameter value",
            [{"code": code, "display": display} for code, display in values],
        ),
        _code_system(
            FOOT_MEASUREMENT,
            "foot-measurement",
            "Foot measurement",
            [_concept(p) for p in MEASUREMENTS],
        ),
        _code_system(
            ORTHOSIS_DEVICE,
            "orthosis-device",
            "Orthosis device",
            [{"code": CUSTOM_FOOT_ORTHOSIS, "display": "Custom-made foot orthosis (insole)"}],
        ),
        _value_set("orthosis-parameter", "Orthosis parameter", ORTHOSIS_PARAMETER, None),
        _value_set("foot-measurement", "Foot measurement", FOOT_MEASUREMENT, None),
    ]
    for p in PARAMETERS:
        if p.values:
            id = f"orthosis-{p.code}"
            codes = [code for code, _ in p.values]
            resources.append(_value_set(id, p.display, ORTHOSIS_VALUE, codes))
    return resources
