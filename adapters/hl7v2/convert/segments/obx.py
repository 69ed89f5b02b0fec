"""OBX -> Observation: segments/ "OBX[Observation]", with the value[x] per OBX-2."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import (
    ATTACHMENT_EXT,
    OBS_CATEGORY,
    Context,
    rep_components,
    with_identifier,
)
from adapters.hl7v2.convert.datatypes import (
    ed_attachment,
    organization_ref,
    practitioner_role_ref,
)
from adapters.hl7v2.message import MessageError, Segment

_RANGE = re.compile(r"\s*([<>]=?)?\s*(-?\d+(?:\.\d+)?)?\s*(?:-\s*(-?\d+(?:\.\d+)?))?\s*$")


def map_observation(
    ctx: Context, obx: Segment, order: str, report: dict[str, Any] | None, specimens: list[str]
) -> str:
    """OBX -> Observation: segments/ "OBX[Observation]" (OBX-2/5 value[x] per value type,
    OBX-3 code, OBX-6 unit, OBX-7 referenceRange, OBX-8 interpretation via
    InterpretationCodes, OBX-11 status via ObservationResultStatusCodesInterpretation,
    OBX-14 effective, OBX-16 responsible observer and OBX-25 medical director of the OBX-23
    performing organization as PractitionerRole performers)."""
    ctx.at(obx)
    code = dt.codeable(obx.components(3))
    if code is None:
        raise MessageError(
            "OBX-3 (observation identifier) is required", error_code="101", location=obx.location(3)
        )
    status = tables.lookup("ObservationResultStatusCodesInterpretation", obx.text(11))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status[0] if status else "unknown",
        "code": code,
    }
    if report is None and ctx.header.message_type == "ADT":
        obs["category"] = [{"coding": [{"system": OBS_CATEGORY, "code": "exam"}]}]
    elif report is not None:
        obs["category"] = [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}]
    if ctx.patient:
        obs["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        obs["encounter"] = {"reference": ctx.encounter}
    when = ctx.time(obx.text(14)) or (report or {}).get("effectiveDateTime")
    if when:
        obs["effectiveDateTime"] = when
    observation_value(ctx, obx, obs)
    ref_range = reference_range(obx.text(7), obx.components(6))
    if ref_range:
        obs["referenceRange"] = [ref_range]
    flags = []
    for rep in obx.reps(8):
        flag = dt.part(rep_components(rep, obx), 1).strip()
        if not flag:  # an empty repetition ("" or spaces) says nothing
            continue
        coding = tables.coding("InterpretationCodes", flag)
        flags.append({"coding": [coding]} if coding else {"text": flag})
    if flags:
        obs["interpretation"] = flags
    performers = [
        p
        for p in (
            practitioner_role_ref(ctx, rep_components(r, obx), _RESPONSIBLE_OBSERVER)
            for r in obx.reps(16)
        )
        if p
    ]
    director = _medical_director(ctx, obx)
    if director:
        performers.append(director)
    if performers:
        obs["performer"] = performers
    if specimens:
        obs["specimen"] = {"reference": specimens[-1]}
    first = (code.get("coding") or [{}])[0]
    key = "/".join(
        (
            order,
            first.get("code") or code.get("text", ""),
            obx.field(4),
            obx.text(1) or str(obx.occurrence),
        )
    )
    ident = {"system": ctx.own_system("obx"), "value": key}
    ref = ctx.entries.upsert(with_identifier(obs, ident), identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref


_RESPONSIBLE_OBSERVER = (
    "http://terminology.hl7.org/CodeSystem/practitioner-role",
    "responsibleObserver",
)
_MEDICAL_DIRECTOR = ("http://terminology.hl7.org/CodeSystem/v2-0912", "MDIR")


def _medical_director(ctx: Context, obx: Segment) -> dict[str, Any] | None:
    """OBX-25 medical director (PractitionerRole MDIR) of the OBX-23 performing organization
    (its OBX-24 address); the organization alone when no director is named."""
    org = organization_ref(ctx, obx.components(23)) if obx.field(23) else None
    if org is not None and "reference" in org and obx.field(24):
        address = dt.address(obx.components(24))
        if address:
            ctx.entries.resource(org["reference"]).setdefault("address", [address])
    if obx.field(25):
        director = practitioner_role_ref(ctx, obx.components(25), _MEDICAL_DIRECTOR, org)
        if director:
            return director
    return org


def observation_value(ctx: Context, obx: Segment, obs: dict[str, Any]) -> None:
    kind = obx.text(2)
    reps = obx.reps(5)
    if not reps:
        return
    first = rep_components(reps[0], obx)
    unit = obx.components(6)
    if kind == "NM":
        value = dt.quantity(dt.part(first, 1), unit)
        if value is not None:
            obs["valueQuantity"] = value
        else:
            obs["valueString"] = dt.part(first, 1)
    elif kind in ("ST", "TX", "FT"):
        obs["valueString"] = "\n".join(
            dt.part(rep_components(r, obx), 1) if kind == "ST" else dt.text(rep_components(r, obx))
            for r in reps
        )
    elif kind in ("CE", "CWE", "CNE", "CF"):
        concept = dt.codeable(first)
        if concept:
            obs["valueCodeableConcept"] = concept
    elif kind == "SN":
        structured_numeric(first, unit, obs)
    elif kind in ("DT", "TS", "DTM"):
        when = ctx.time(dt.part(first, 1))
        if when:
            obs["valueDateTime"] = when
    elif kind == "ED":
        attachment = ed_attachment(first)
        if attachment:
            obs["extension"] = [{"url": ATTACHMENT_EXT, "valueAttachment": attachment}]
    elif kind == "TM":
        obs["valueTime"] = time_of_day(dt.part(first, 1))
    elif kind in _FORMATTED:
        obs["valueString"] = _FORMATTED[kind](first) or dt.text(first)
    else:
        obs["valueString"] = dt.text(first)


def _telecom(comps: list[str]) -> str:
    found = dt.contact_point(comps)
    return str(found["value"]) if found else ""


def _address(comps: list[str]) -> str:
    found = dt.address(comps) or {}
    lines = [*found.get("line", []), found.get("city"), found.get("state"), found.get("postalCode")]
    return ", ".join(str(v) for v in (*lines, found.get("country")) if v)


def _name(comps: list[str]) -> str:
    found = dt.human_name(comps) or {}
    return " ".join(
        [*found.get("prefix", []), *found.get("given", []), found.get("family", "")]
    ).strip()


_FORMATTED: dict[str, Callable[[list[str]], str]] = {
    "XTN": _telecom,  # Observation.value[x] has no ContactPoint: its formatted number
    "XAD": _address,
    "XPN": _name,
    "CX": lambda comps: dt.part(comps, 1),
}
"""OBX-2 types whose value FHIR R4 Observation cannot hold as such: a readable string."""


def time_of_day(value: str) -> str:
    digits = (value.split("+")[0].split("-")[0].split(".")[0] + "000000")[:6]
    return f"{digits[:2]}:{digits[2:4]}:{digits[4:6]}"


def structured_numeric(comps: list[str], unit: list[str], obs: dict[str, Any]) -> None:
    """SN -> Quantity with comparator, Range or Ratio: datatypes/ "SN[Quantity]",
    "SN[Range]", "SN[Ratio]"."""
    comparator, first, sep, second = (dt.part(comps, n) for n in (1, 2, 3, 4))
    low = dt.quantity(first, unit)
    high = dt.quantity(second, unit)
    if sep == "-" and low and high:
        obs["valueRange"] = {"low": low, "high": high}
    elif sep in (":", "/") and low and high:
        obs["valueRatio"] = {"numerator": low, "denominator": high}
    elif low:
        if comparator in ("<", ">", "<=", ">="):
            low["comparator"] = comparator
        obs["valueQuantity"] = low
    else:
        obs["valueString"] = "".join(comps)


def reference_range(text: str, unit: list[str]) -> dict[str, Any] | None:
    """OBX-7 -> referenceRange: low/high when it reads as "a-b", "<b" or ">a", else text."""
    if not text:
        return None
    match = _RANGE.match(text)
    if match:
        comparator, a, b = match.groups()
        low = dt.quantity(a, unit) if a and comparator in (None, ">", ">=") else None
        high = (
            dt.quantity(b, unit)
            if b
            else (dt.quantity(a, unit) if a and comparator in ("<", "<=") else None)
        )
        if (low or high) and not (comparator and b):
            return dt.clean({"low": low, "high": high, "text": text})
    return {"text": text}
