"""The kick-off request: `[base]/$export`, `Patient/$export`, `Group/[id]/$export`.

https://hl7.org/fhir/uv/bulkdata/export.html#bulk-data-kick-off-request -- "Specifies
whether the response is immediate or asynchronous. Currently, only a value of
respond-async is supported" (`Prefer`), and "a server SHALL return an error for any
unsupported parameter" unless the client asked for `Prefer: handling=lenient`. Everything
the job needs is decided here, at kick-off: the types, the filters (checked by parsing
them as searches), the cohort of a Group (its members, or its characteristics evaluated
now), the transactionTime and the caller's access context.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fhir_server.bulk.jobs import Job, context_to_json, new_id
from fhir_server.bulk.scan import COMPARTMENT, typefilter_params
from fhir_server.context import AccessContext, restrict_search
from fhir_server.errors import BadRequest, Forbidden
from fhir_server.interactions.common import now_instant
from fhir_server.interactions.request import Response
from fhir_server.model import fhirjson
from fhir_server.search.compartments import member_types
from fhir_server.search.dates import parse_instant_range
from fhir_server.search.parse import parse_search

if TYPE_CHECKING:
    from fhir_server.interactions.operations import OperationCall, Params
    from fhir_server.interactions.service import FhirService

FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
KNOWN = frozenset(
    {"_outputFormat", "_since", "_type", "_typeFilter", "_elements", "patient", "_deidentify"}
)
NOT_EXPORTED = frozenset({"Binary"})  # content lives in the blob store, not in the JSON
RESULT_PARAMS = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_offset"}
)
CLINICAL_FINDING = ("http://snomed.info/sct", "404684003")
_ELEMENT = re.compile(r"^([A-Z][A-Za-z]+\.)?[a-z][A-Za-z0-9]*(\[x\])?$")
PAGE = 500


def _prefer(call: OperationCall) -> set[str]:
    return {
        p.strip().lower() for p in (call.headers.get("prefer") or "").replace(";", ",").split(",")
    }


async def kickoff(
    svc: FhirService, call: OperationCall, transforms: frozenset[str]
) -> tuple[Job, Response]:
    """The job `call` asks for (not saved yet) and the 202 answer."""
    prefer = _prefer(call)
    if "respond-async" not in prefer:
        raise BadRequest("$export runs asynchronously: send the header 'Prefer: respond-async'")
    lenient = "handling=lenient" in prefer
    params = call.params
    unknown = sorted(params.names() - KNOWN)
    if unknown and not lenient:
        raise BadRequest(
            f"$export does not support the parameter(s) {', '.join(unknown)} (send "
            "'Prefer: handling=lenient' to have them ignored)",
            expression=tuple(unknown),
        )
    fmt = params.string("_outputFormat")
    if fmt is not None and fmt not in FORMATS:
        raise BadRequest(
            f"_outputFormat {fmt} is not supported; use application/fhir+ndjson",
            expression=("_outputFormat",),
        )
    ctx = call.context
    level = "system" if call.type is None else "patient" if call.type == COMPARTMENT else "group"
    types = _types(svc, ctx, params, level)
    filters = _type_filters(svc, params, types)
    patients = await _cohort(svc, call, params) if level != "system" else None
    transform = params.string("_deidentify")
    if transform is not None and transform not in transforms:
        raise BadRequest(
            f"_deidentify={transform} names no export transform of this server",
            expression=("_deidentify",),
        )
    job = Job(
        id=new_id(),
        request=_request_url(call),
        base=call.base,
        transaction_time=now_instant(),
        types=types,
        owner=context_to_json(ctx),
        level=level,
        patients=patients,
        since=_since(params),
        type_filters=filters,
        elements=_elements(params),
        transform=transform,
    )
    status = f"{call.base}/$export-poll-status?_jobId={job.id}"
    return job, Response(202, None, {"Content-Location": status})


def _strings(params: Params, name: str) -> list[str]:
    return [s.strip() for v in params.strings(name) for s in v.split(",") if s.strip()]


def _types(svc: FhirService, ctx: AccessContext, params: Params, level: str) -> list[str]:
    allowed = set(svc.resource_types) - NOT_EXPORTED
    if level != "system":
        allowed &= set(member_types(svc.registry, COMPARTMENT))
    asked = _strings(params, "_type")
    if not asked:
        return sorted(t for t in allowed if _may_read(svc, ctx, t))
    wrong = [t for t in asked if t not in allowed]
    if wrong:
        where = "in the Patient compartment" if level != "system" else "exported"
        raise BadRequest(
            f"_type: {', '.join(wrong)} is not a resource type {where} here",
            expression=("_type",),
        )
    for type in asked:
        svc.policy.check(ctx, "search", type)  # 403 naming the scope it needs
    return list(dict.fromkeys(asked))


def _may_read(svc: FhirService, ctx: AccessContext, type: str) -> bool:
    try:
        svc.policy.check(ctx, "search", type)
    except Forbidden:
        return False
    return True


def _type_filters(svc: FhirService, params: Params, types: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for value in params.strings("_typeFilter"):
        type, mark, query = value.partition("?")
        if not mark or type not in svc.resource_types:
            raise BadRequest(
                f"_typeFilter '{value}' is not a search of the form Type?params",
                expression=("_typeFilter",),
            )
        if type not in types:
            raise BadRequest(
                f"_typeFilter names {type}, which this export does not include",
                expression=("_typeFilter",),
            )
        found = typefilter_params(query)
        if not found or any(k in RESULT_PARAMS for k, _ in found):
            raise BadRequest(
                f"_typeFilter '{value}' must hold search criteria only (no "
                "_count, _sort, _include...)",
                expression=("_typeFilter",),
            )
        parse_search(svc.registry, (type,), found, strict=True, codes=svc.codes)  # 400 if wrong
        out.setdefault(type, []).append(query)
    return out


def _since(params: Params) -> str | None:
    value = params.string("_since")
    if value is None:
        return None
    bounds = parse_instant_range(value) if "T" in value else None
    if bounds is None:
        raise BadRequest(
            f"_since '{value}' is not a FHIR instant (e.g. 2026-01-01T00:00:00Z)",
            expression=("_since",),
        )
    return bounds[0]


def _elements(params: Params) -> list[str]:
    found = _strings(params, "_elements")
    wrong = [e for e in found if not _ELEMENT.match(e)]
    if wrong:
        raise BadRequest(
            f"_elements: {', '.join(wrong)} is not an element name", expression=("_elements",)
        )
    return found


def _request_url(call: OperationCall) -> str:
    path = {"system": "", "type": f"{call.type}/", "instance": f"{call.type}/{call.id}/"}
    query = [(p["name"], v) for p in call.params.parts for k, v in p.items() if k == "valueString"]
    tail = f"?{urlencode(query)}" if query and call.method == "GET" else ""
    return f"{call.base}/{path[call.level]}$export{tail}"


# -- the cohort ----------------------------------------------------------------------------


async def _cohort(svc: FhirService, call: OperationCall, params: Params) -> list[str] | None:
    """The patients of a Group export, or those the `patient` parameter names; None: all."""
    named = _patient_params(params)
    if call.type == "Group":
        assert call.id is not None
        group = fhirjson.loads((await svc.current(call.context, "Group", call.id)).data)
        members = await _group_patients(svc, call.context, group)
        return sorted(members & named if named is not None else members)
    return sorted(named) if named is not None else None


def _patient_params(params: Params) -> set[str] | None:
    found = params.values("patient")
    if not found:
        return None
    out = set()
    for value in found:
        ref = value.get("reference") if isinstance(value, dict) else value
        if not isinstance(ref, str) or not ref.startswith("Patient/") or "/" in ref[8:]:
            raise BadRequest("patient must be a reference 'Patient/<id>'", expression=("patient",))
        out.add(ref[8:])
    return out


async def _group_patients(svc: FhirService, ctx: AccessContext, group: dict[str, Any]) -> set[str]:
    """Group.member entities that are Patients (inactive members left out); a Group with no
    members but characteristics: the patients with a Condition of every characteristic."""
    members = group.get("member") or []
    if members or not group.get("characteristic"):
        out = set()
        for member in members:
            ref = (member.get("entity") or {}).get("reference") or ""
            if member.get("inactive") is True or "Patient/" not in ref:
                continue
            out.add(ref.rsplit("Patient/", 1)[1].split("/")[0])
        return out
    cohort: set[str] | None = None
    for characteristic in group["characteristic"]:
        found = await _with_condition(svc, ctx, characteristic)
        cohort = found if cohort is None else cohort & found
    return cohort or set()


async def _with_condition(
    svc: FhirService, ctx: AccessContext, characteristic: dict[str, Any]
) -> set[str]:
    codings = (characteristic.get("code") or {}).get("coding") or []
    value = characteristic.get("valueCodeableConcept") or {}
    if (
        not any((c.get("system"), c.get("code")) == CLINICAL_FINDING for c in codings)
        or characteristic.get("exclude") is True
        or not value.get("coding")
    ):
        raise BadRequest(
            "Group characteristics are supported in one shape: code SNOMED CT 404684003 "
            "(clinical finding), exclude false, valueCodeableConcept the Condition code",
            expression=("Group.characteristic",),
        )
    codes = ",".join(f"{c.get('system', '')}|{c['code']}" for c in value["coding"] if c.get("code"))
    parsed = parse_search(svc.registry, ("Condition",), [("code", codes)], strict=True)
    query = restrict_search(svc.policy, ctx, parsed.query)
    patients: set[str] = set()
    offset = 0
    while True:
        page = await svc.storage.search(replace(query, count=PAGE, offset=offset, total="none"))
        for rec in page.resources:
            if svc.policy.visible(ctx, rec):
                ref = (fhirjson.loads(rec.data).get("subject") or {}).get("reference") or ""
                if ref.startswith("Patient/"):
                    patients.add(ref[8:])
        if len(page.resources) < PAGE:
            return patients
        offset += PAGE
