"""Reading and checking a foot-orthosis order: the DeviceRequest and its measurements.

A DeviceRequest whose `code` names a custom foot orthosis (ours or HCPCS L3030) is an
order for this pipeline: it must be an `order`, and each `parameter` must carry a code of
`ORTHOSIS_PARAMETER` with a value of the right kind inside its range. A refusal names the
parameter and its range (422, an OperationOutcome with each element's expression: the
proposed resource "violated ... server business rules", R4 http.html#create). Foot
measurement Observations (codes of `FOOT_MEASUREMENT`) must be in mm and plausible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from adapters.orthotics import parameters
from adapters.orthotics.codes import (
    BY_CODE,
    CUSTOM_FOOT_ORTHOSIS,
    FOOT_MEASUREMENT,
    HCPCS,
    HCPCS_CUSTOM_INSERT,
    LATERALITY,
    MEASUREMENT_BY_CODE,
    ORTHOSIS_DEVICE,
    ORTHOSIS_PARAMETER,
    ORTHOSIS_VALUE,
    PARAMETERS,
    PROCESS,
    UCUM,
    Code,
)
from adapters.orthotics.model import Prescription
from adapters.orthotics.parameters import PROCESSES, Side
from fhir_server.errors import Issue, Unprocessable

SHELL_THICKNESS = parameters.SHELL_THICKNESS.code

Value = float | str


@dataclass(frozen=True, slots=True)
class Order:
    """What the design needs from a checked DeviceRequest."""

    laterality: str  # left, right or pair
    process: str  # fdm-tpu, mjf-tpu, sls-pa12
    values: dict[str, Value] = field(default_factory=dict)  # parameter code -> value


def is_orthosis_order(resource: dict[str, Any]) -> bool:
    if resource.get("resourceType") != "DeviceRequest":
        return False
    codings = (resource.get("codeCodeableConcept") or {}).get("coding") or ()
    return any(
        (c.get("system"), c.get("code"))
        in ((ORTHOSIS_DEVICE, CUSTOM_FOOT_ORTHOSIS), (HCPCS, HCPCS_CUSTOM_INSERT))
        for c in codings
    )


def check_resource(resource: dict[str, Any]) -> None:
    """The validator: orthosis orders and foot measurements are checked, the rest passes."""
    if is_orthosis_order(resource):
        read_order(resource)
    elif resource.get("resourceType") == "Observation":
        measurement(resource)


def read_order(resource: dict[str, Any]) -> Order:
    """The order's design characteristics, checked (422 naming each problem)."""
    issues: list[Issue] = []
    if resource.get("intent") != "order":
        issues.append(_issue("An orthosis DeviceRequest has intent 'order'", "intent"))
    values: dict[str, Value] = {}
    for i, parameter in enumerate(resource.get("parameter") or ()):
        where = f"DeviceRequest.parameter[{i}]"
        problem, code, value = _parameter(parameter)
        if problem:
            issues.append(Issue(problem, "value", expression=(where,)))
        elif code in values:
            issues.append(Issue(f"Parameter '{code}' is given twice", "value", expression=(where,)))
        elif code is not None and value is not None:
            values[code] = value
    issues += [
        _issue(f"Parameter '{p.code}' ({p.display}) is required: {p.range_text()}", "parameter")
        for p in PARAMETERS
        if p.required and p.code not in values
    ]
    issues += _wall_issues(values)
    if issues:
        raise Unprocessable(issues[0].diagnostics, issues=issues)
    return Order(str(values[LATERALITY]), str(values[PROCESS]), values)


def _parameter(parameter: dict[str, Any]) -> tuple[str | None, str | None, Value | None]:
    """(problem, code, value) of one DeviceRequest.parameter."""
    codings = (parameter.get("code") or {}).get("coding") or ()
    ours = [c.get("code") for c in codings if c.get("system") == ORTHOSIS_PARAMETER]
    if not ours:
        shown = ", ".join(f"{c.get('system')}|{c.get('code')}" for c in codings) or "none"
        return f"Unknown parameter code ({shown}); use a code of {ORTHOSIS_PARAMETER}", None, None
    spec = BY_CODE.get(str(ours[0]))
    if spec is None:
        return f"Unknown parameter code '{ours[0]}' in {ORTHOSIS_PARAMETER}", None, None
    problem, value = _value(spec, parameter)
    return problem, spec.code, value


def _value(spec: Code, holder: dict[str, Any]) -> tuple[str | None, Value | None]:
    """The checked value of a parameter (or measurement) `spec` held in `holder`."""
    if spec.values:
        codings = (holder.get("valueCodeableConcept") or {}).get("coding") or ()
        codes = [c.get("code") for c in codings if c.get("system") == ORTHOSIS_VALUE]
        allowed = {code for code, _ in spec.values}
        if not codes or codes[0] not in allowed:
            got = codes[0] if codes else "no code of " + ORTHOSIS_VALUE
            return f"Parameter '{spec.code}' is {got}; it must be {spec.range_text()}", None
        return None, str(codes[0])
    quantity = holder.get("valueQuantity") or {}
    number, unit = quantity.get("value"), quantity.get("code") or quantity.get("unit")
    if not isinstance(number, int | float) or isinstance(number, bool):
        return f"Parameter '{spec.code}' needs a valueQuantity in {spec.unit}", None
    if unit != spec.unit or quantity.get("system", UCUM) != UCUM:
        return f"Parameter '{spec.code}' is in '{unit}'; give it in {spec.unit} (UCUM)", None
    assert spec.low is not None and spec.high is not None
    if not spec.low <= number <= spec.high:
        return (
            f"Parameter '{spec.code}' ({spec.display}) is {number:g} {spec.unit}, "
            f"outside its range {spec.range_text()}"
        ), None
    return None, float(number)


def _wall_issues(values: dict[str, Value]) -> list[Issue]:
    thickness, process = values.get(SHELL_THICKNESS), values.get(PROCESS)
    spec = PROCESSES.get(cast(parameters.Process, process))
    if not isinstance(thickness, float) or spec is None:
        return []
    wall = spec.min_wall_mm
    if thickness >= wall:
        return []
    message = (
        f"Parameter '{SHELL_THICKNESS}' is {thickness:g} mm, below the {wall:g} mm minimum "
        f"wall of {process}"
    )
    return [_issue(message, "parameter")]


def measurement(resource: dict[str, Any]) -> tuple[str, float] | None:
    """(code, mm) of a foot measurement Observation, checked; None for other Observations."""
    codings = (resource.get("code") or {}).get("coding") or ()
    codes = [c.get("code") for c in codings if c.get("system") == FOOT_MEASUREMENT]
    if not codes:
        return None
    spec = MEASUREMENT_BY_CODE.get(str(codes[0]))
    if spec is None:
        message = f"Unknown foot measurement code '{codes[0]}' in {FOOT_MEASUREMENT}"
        raise Unprocessable(
            message, issues=[Issue(message, "code", expression=("Observation.code",))]
        )
    problem, value = _value(spec, resource)
    if problem or not isinstance(value, float):
        message = (problem or "").replace("Parameter", "Measurement")
        raise Unprocessable(
            message, issues=[Issue(message, "value", expression=("Observation.value",))]
        )
    return spec.code, value


def _issue(message: str, element: str) -> Issue:
    return Issue(message, "value", expression=(f"DeviceRequest.{element}",))


def prescription(order: Order) -> Prescription:
    """The geometry's Prescription: given values, else the defaults of `parameters.py`."""

    def number(p: parameters.Parameter) -> float:
        value = order.values.get(p.code, p.default)
        return float(value)

    sides: tuple[Side, ...] = ("left", "right") if order.laterality == "pair" else ()
    if order.laterality in ("left", "right"):
        sides = (cast(Side, order.laterality),)
    extension = order.values.get(parameters.FOREFOOT_EXTENSION_CODE, "full-length")
    return Prescription(
        sides=sides,
        arch_height_mm=number(parameters.ARCH_HEIGHT),
        heel_cup_depth_mm=number(parameters.HEEL_CUP_DEPTH),
        rearfoot_posting_deg=number(parameters.REARFOOT_POSTING),
        forefoot_posting_deg=number(parameters.FOREFOOT_POSTING),
        forefoot_extension=cast(parameters.ForefootExtension, extension),
        shell_thickness_mm=number(parameters.SHELL_THICKNESS),
        process=cast(parameters.Process, order.process),
    )
