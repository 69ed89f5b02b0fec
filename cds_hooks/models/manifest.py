"""The manifest of a model package (`manifest.json`): what the service is, where each model
input comes from in FHIR, and how the model's output maps to a card.

```
{"id": "diabetes-progression", "hook": "patient-view", "title": "...", "description": "...",
 "model": {"file": "model.onnx", "opset": 17, "output": "variable", "column": 0},
 "inputs": [
   {"name": "age", "source": "patient-age"},
   {"name": "sex", "source": "patient-gender", "values": {"female": 1, "male": 2}},
   {"name": "hdl", "source": "observation", "code": "http://loinc.org|2085-9",
    "unit": "mg/dL", "max_age_days": 365, "molar_mass": 386.65},
   {"name": "radius", "source": "observation", "code": "<panel system|code>",
    "component": "<system|code>", "unit": "1"},
   {"name": "diabetes", "source": "condition", "codes": ["http://snomed.info/sct|44054006"]}],
 "bands": [{"below": 150, "indicator": "info", "summary": "... {value:.0f} ..."}, ...],
 "link": {"label": "...", "url": "...", "type": "smart"}}
```

The row given to the model has the inputs in manifest order, as float32. `bands` are tried in
order; the first whose `below` is above the output (or that has no `below`) gives the card.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MANIFEST = "manifest.json"
MODEL_CARD = "MODEL_CARD.md"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _system_code(value: str) -> str:
    system, bar, code = value.partition("|")
    if not (system and bar and code):
        raise ValueError(f"a code is written 'system|code': {value!r}")
    return value


class ModelFile(_Strict):
    file: str = "model.onnx"
    opset: int  # the ONNX opset the model was exported with (recorded, and checked at load)
    output: str  # the ONNX output read: "variable" (regressors) or "probabilities"
    column: int = 0  # the column of that output (the class, for probabilities)
    scale: float = 1.0  # the output is multiplied by this before banding and display


class Input(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    source: Literal["observation", "patient-age", "patient-gender", "condition"]
    label: str | None = None  # how the card names it (default: the name)
    # observation: the Observation's code, or a panel's code plus the component's code
    code: str | None = None
    component: str | None = None
    unit: str | None = None  # UCUM unit the model expects; other units are converted
    molar_mass: float | None = Field(default=None, gt=0)  # g/mol, for mg/dL <-> mmol/L
    max_age_days: int | None = Field(default=None, gt=0)  # older values count as missing
    transform: Literal["ln"] | None = None  # applied after conversion
    # patient-gender: the number each administrative gender becomes
    values: dict[str, float] | None = None
    # condition: 1.0 when an active Condition has one of these codes (or one of the value
    # set's, a FHIR ValueSet JSON file in the package folder), else 0.0
    codes: tuple[str, ...] = ()
    value_set: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+\.json$")

    @field_validator("code", "component")
    @classmethod
    def _coded(cls, value: str | None) -> str | None:
        return None if value is None else _system_code(value)

    @field_validator("codes")
    @classmethod
    def _all_coded(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_system_code(v) for v in values)

    @model_validator(mode="after")
    def _complete(self) -> Input:
        needs = {
            "observation": ("code", "unit"),
            "patient-gender": ("values",),
            "condition": ("codes",) if self.value_set is None else (),
            "patient-age": (),
        }[self.source]
        missing = [name for name in needs if not getattr(self, name)]
        if missing:
            raise ValueError(f"input {self.name!r} ({self.source}) needs {', '.join(missing)}")
        return self

    @property
    def display(self) -> str:
        return self.label or self.name


class Band(_Strict):
    below: float | None = None  # None: every value left (the last band)
    indicator: Literal["info", "warning", "critical"]
    summary: str  # a format string of `value` (the model output); under 140 characters
    detail: str | None = None

    @field_validator("summary")
    @classmethod
    def _formats(cls, summary: str) -> str:
        try:
            summary.format(value=0.5)
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"a band summary formats `value` only: {error}") from error
        return summary


class LinkSpec(_Strict):
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    app_context: str | None = None


class Manifest(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    hook: Literal["patient-view"]  # the inputs are read from the patient in context
    title: str
    description: str
    source_label: str = "Model registry"
    model: ModelFile
    inputs: tuple[Input, ...] = Field(min_length=1)
    bands: tuple[Band, ...] = Field(min_length=1)
    link: LinkSpec | None = None
    not_for_clinical_use: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError("input names must be unique")
        if self.bands[-1].below is not None:
            raise ValueError("the last band must have no 'below' (it takes every value left)")
        return self


class ManifestError(ValueError):
    """A package folder whose manifest, model or card cannot be used (the message says why)."""


def read_manifest(folder: Path) -> Manifest:
    """The package's manifest, each condition input's value set read into its `codes`."""
    path = folder / MANIFEST
    try:
        manifest = Manifest.model_validate_json(path.read_bytes())
    except OSError as error:
        raise ManifestError(f"{folder.name}: cannot read {MANIFEST}: {error}") from error
    except ValidationError as error:
        raise ManifestError(f"{folder.name}: {MANIFEST} is not valid: {error}") from error
    inputs = tuple(_with_value_set(folder, item) for item in manifest.inputs)
    return manifest.model_copy(update={"inputs": inputs})


def _with_value_set(folder: Path, item: Input) -> Input:
    if item.value_set is None:
        return item
    try:
        value_set = json.loads((folder / item.value_set).read_bytes())
        codes = value_set_codes(value_set)
    except (OSError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise ManifestError(f"{folder.name}: cannot read {item.value_set}: {error}") from error
    if not codes:
        raise ManifestError(f"{folder.name}: {item.value_set} lists no codes")
    return item.model_copy(update={"codes": tuple(sorted({*item.codes, *codes}))})


def value_set_codes(value_set: dict[str, Any]) -> set[str]:
    """`system|code` of a ValueSet's expansion and of its compose's enumerated concepts (an
    intensional value set, with filters, must be given expanded)."""
    if value_set.get("resourceType") != "ValueSet":
        raise ValueError("not a FHIR ValueSet")
    found = {
        f"{c['system']}|{c['code']}" for c in value_set.get("expansion", {}).get("contains", [])
    }
    for include in value_set.get("compose", {}).get("include", []):
        if include.get("filter") or include.get("valueSet"):
            raise ValueError("filters and included value sets must be given expanded")
        found |= {f"{include['system']}|{c['code']}" for c in include.get("concept", [])}
    return found
