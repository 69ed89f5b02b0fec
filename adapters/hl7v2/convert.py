"""One HL7 v2 message to one FHIR transaction Bundle, per the HL7 v2-to-FHIR IG maps.

The maps followed are the IG's spreadsheets (package `hl7.fhir.uv.v2mappings`, folder
`mappings/`): message maps in `messages/` (e.g. "ADT_A01", "ORU_R01"), segment maps in
`segments/` (e.g. "PID[Patient]"), datatype maps in `datatypes/` (see `datatypes`) and
vocabulary maps in `codesystems/` (see `tables`). Each mapping function names the map it
follows.

Every entry is an update, so a replay of the same message changes nothing: things of the
real world (patient, encounter, practitioner, order, result) are conditional updates on an
identifier (`bundle.BundleBuilder.upsert`); the MessageHeader, the Provenance and the Binary
holding the message are `PUT Type/id` with ids hashed from the sender, MSH-10 and the payload.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import BundleBuilder, identifier_criteria, stable_id
from adapters.hl7v2.message import (
    Header,
    Message,
    MessageError,
    Segment,
    components,
    decode,
    normalise,
    parse,
)

V2_MESSAGE = "x-application/hl7-v2+er7"
EVENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0003"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ATTACHMENT_EXT = (
    "https://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"
)
_RANGE = re.compile(r"\s*([<>]=?)?\s*(-?\d+(?:\.\d+)?)?\s*(?:-\s*(-?\d+(?:\.\d+)?))?\s*$")


@dataclass(frozen=True)
class ConvertOptions:
    timezone: str = "UTC"  # the zone of a TS/DTM sent without an offset
    identifier_systems: Mapping[str, str] = field(default_factory=dict)  # authority -> system


@dataclass(frozen=True)
class Conversion:
    bundle: dict[str, Any]
    header: Header
    patient_key: str | None  # "system|value" of the patient the message is about
    merged_keys: tuple[str, ...] = ()  # "system|value" of the patients an A40 merges


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MessageError(
            f"Unknown time zone '{name}' in the conversion options", ack_code="AE"
        ) from None


class _Context:
    """What the maps of one message share: the message, the options and the entries."""

    def __init__(self, message: Message, options: ConvertOptions, payload: bytes) -> None:
        self.message = message
        self.header = message.header
        self.zone = _zone(options.timezone)
        self.systems = options.identifier_systems
        self.entries = BundleBuilder()
        self.payload = payload
        self.sender = f"{self.header.sending_application}|{self.header.sending_facility}"
        facility = self.header.sending_facility.split("^")
        self.default_system = dt.authority_system(
            facility[0],
            facility[1] if len(facility) > 1 else "",
            facility[2] if len(facility) > 2 else "",
            self.systems,
        )
        self.patient: str | None = None
        self.patient_key: str | None = None
        self.merged_keys: list[str] = []  # patients an A40 merges into `patient_key`
        self.encounter: str | None = None
        self.focus: list[str] = []

    def time(self, value: str) -> str | None:
        return dt.date_time(value, self.zone) if value else None

    def identifier(self, comps: list[str]) -> dict[str, Any] | None:
        found = dt.identifier(comps, self.systems)
        if found is not None and not found.get("system") and self.default_system:
            found["system"] = self.default_system
        return found

    def own_system(self, kind: str) -> str:
        """An identifier system for things the sender numbers without naming an authority."""
        h = self.header
        name = ".".join(
            p for p in (h.sending_application.split("^")[0], h.sending_facility.split("^")[0]) if p
        )
        return f"urn:id:{quote(name or 'unknown', safe='.-_')}:{kind}"


def convert(raw: bytes | str, options: ConvertOptions | None = None) -> Conversion:
    """`raw` (one ER7 message) as a transaction Bundle; MessageError when it cannot be."""
    options = options or ConvertOptions()
    text = decode(raw) if isinstance(raw, bytes) else normalise(raw)
    message = parse(text)
    ctx = _Context(message, options, text.encode("utf-8"))
    kind, event = message.header.message_type, message.header.trigger_event
    _FAMILIES[kind](ctx, event)
    _message_header(ctx)
    _provenance(ctx)
    return Conversion(ctx.entries.bundle(), message.header, ctx.patient_key, tuple(ctx.merged_keys))


# --- message maps ---------------------------------------------------------------------------


def _adt(ctx: _Context, event: str) -> None:
    """ADT_A01 (and the events sharing its structure): messages/ "ADT_A01" map."""
    if event == "A40":
        _merge(ctx)
        return
    patient = _patient(ctx, _required(ctx, "PID"))
    pd1 = ctx.message.first("PD1")
    if pd1 is not None:
        _primary_care(ctx, pd1, ctx.entries.resource(patient))
    pv1 = ctx.message.first("PV1")
    if pv1 is not None and event not in ("A28", "A31"):
        ctx.encounter = _encounter(ctx, pv1, event)
    for seg in ctx.message.segments:
        if seg.name == "NK1":
            _related_person(ctx, seg)
        elif seg.name == "AL1":
            _allergy(ctx, seg)
        elif seg.name == "DG1":
            _condition(ctx, seg)
        elif seg.name == "PR1":
            _procedure(ctx, seg)
        elif seg.name == "IN1":
            _coverage(ctx, seg)
        elif seg.name == "OBX":
            visit = ctx.message.first("PV1")
            order = visit.text(19) if visit is not None else ""
            _observation(ctx, seg, order or (ctx.patient_key or ""), None, [])


def _merge(ctx: _Context) -> None:
    """ADT_A39/A40 merge: messages/ "ADT_A40" (PID[Patient], MRG-1 to Patient.link)."""
    segments = ctx.message.segments
    found = False
    for i, seg in enumerate(segments):
        if seg.name != "PID":
            continue
        survivor = _patient(ctx, seg)
        mrg = next((s for s in segments[i + 1 :] if s.name in ("MRG", "PID")), None)
        if mrg is None or mrg.name != "MRG":
            raise MessageError(
                "A merge needs an MRG segment after each PID",
                error_code="100",
                location=f"MRG^{seg.occurrence}",
            )
        merged_id = ctx.identifier(mrg.components(1))
        if merged_id is None:
            raise MessageError(
                "MRG-1 (prior patient identifier) is required",
                error_code="101",
                location=mrg.location(1),
            )
        # The merged patient keeps what is known of it: created (bare) only if unknown,
        # then patched inactive and linked, the same way on a replay.
        criteria = identifier_criteria(merged_id)
        merged = ctx.entries.create_if_none(
            {"resourceType": "Patient", "identifier": [merged_id]}, criteria
        )
        ctx.entries.patch("Patient", criteria, _merge_patch(survivor))
        ctx.entries.resource(survivor).setdefault("link", []).append(
            {"other": {"reference": merged}, "type": "replaces"}
        )
        ctx.merged_keys.append(criteria.removeprefix("identifier="))
        ctx.focus.append(merged)
        found = True
    if not found:
        raise MessageError("The message has no PID segment", error_code="100", location="PID")


def _merge_patch(survivor: str) -> dict[str, Any]:
    """FHIRPath Patch: `active` false, and one `replaced-by` link to `survivor`."""

    def op(kind: str, path: str, *parts: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": "operation",
            "part": [
                {"name": "type", "valueCode": kind},
                {"name": "path", "valueString": path},
                *parts,
            ],
        }

    return {
        "resourceType": "Parameters",
        "parameter": [
            op("delete", "Patient.active"),
            op(
                "add",
                "Patient",
                {"name": "name", "valueString": "active"},
                {"name": "value", "valueBoolean": False},
            ),
            op("delete", "Patient.link.where(type = 'replaced-by')"),
            op(
                "add",
                "Patient",
                {"name": "name", "valueString": "link"},
                {
                    "name": "value",
                    "part": [
                        {"name": "other", "valueReference": {"reference": survivor}},
                        {"name": "type", "valueCode": "replaced-by"},
                    ],
                },
            ),
        ],
    }


def _oru(ctx: _Context, event: str) -> None:
    """ORU_R01: messages/ "ORU_R01" (PID, PV1, ORC, OBR, OBX, NTE, SPM)."""
    pid = ctx.message.first("PID")
    if pid is not None:
        _patient(ctx, pid)
    pv1 = ctx.message.first("PV1")
    if pv1 is not None and pv1.field(19):
        ctx.encounter = _encounter(ctx, pv1, "")
    orc: Segment | None = None
    report: dict[str, Any] | None = None
    order = ""
    specimens: list[str] = []
    last_obs: dict[str, Any] | None = None
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            order = seg.text(3) or seg.text(2) or (orc.text(3) or orc.text(2) if orc else "")
            specimens = []
            request = _service_request(ctx, orc, seg)
            ref = _diagnostic_report(ctx, orc, seg, request)
            report = ctx.entries.resource(ref)
            orc, last_obs = None, None
        elif seg.name == "OBX":
            obs_ref = _observation(ctx, seg, order, report, specimens)
            last_obs = ctx.entries.resource(obs_ref)
            if report is not None:
                report.setdefault("result", []).append({"reference": obs_ref})
        elif seg.name == "SPM":
            spec = _specimen(ctx, seg)
            specimens.append(spec)
            if report is not None:
                report.setdefault("specimen", []).append({"reference": spec})
        elif seg.name == "NTE" and last_obs is not None:
            note = _note(seg)
            if note:
                last_obs.setdefault("note", []).append(note)
    if report is None:
        raise MessageError("An ORU^R01 needs an OBR segment", error_code="100", location="OBR")


def _orders(ctx: _Context, event: str) -> None:
    """ORM_O01 / OML_O21: messages/ "ORM_O01", "OML_O21" (ORC[ServiceRequest], OBR, and
    for OML the SPM[Specimen] of each request, in ServiceRequest.specimen)."""
    pid = ctx.message.first("PID")
    if pid is not None:
        _patient(ctx, pid)
    orc: Segment | None = None
    request: str | None = None
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            if orc is not None:
                request = _service_request(ctx, orc, None)
            orc = seg
        elif seg.name == "OBR":
            request = _service_request(ctx, orc, seg)
            orc = None
        elif seg.name == "SPM":
            specimen = _specimen(ctx, seg)
            if request is not None:
                ctx.entries.resource(request).setdefault("specimen", []).append(
                    {"reference": specimen}
                )
    if orc is not None:
        request = _service_request(ctx, orc, None)
    if request is None:
        raise MessageError(
            "An order message needs an ORC or OBR segment", error_code="100", location="ORC"
        )


def _vaccinations(ctx: _Context, event: str) -> None:
    """VXU_V04: messages/ "VXU_V04" (PID, ORC, RXA[Immunization], RXR[Immunization], OBX)."""
    _patient(ctx, _required(ctx, "PID"))
    orc: Segment | None = None
    last: dict[str, Any] | None = None
    made = False
    for seg in ctx.message.segments:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "RXA":
            last = ctx.entries.resource(_immunization(ctx, orc, seg))
            made = True
        elif seg.name == "RXR" and last is not None:
            route = dt.codeable(seg.components(1))
            if route:
                last["route"] = route
            site = dt.codeable(seg.components(2))
            if site:
                last["site"] = site
    if not made:
        raise MessageError("A VXU^V04 needs an RXA segment", error_code="100", location="RXA")


def _schedule(ctx: _Context, event: str) -> None:
    """SIU_S12: messages/ "SIU_S12" (SCH[Appointment], PID, AIS, AIP, AIL)."""
    pid = ctx.message.first("PID")
    if pid is not None:
        _patient(ctx, pid)
    _appointment(ctx, _required(ctx, "SCH"), event)


def _documents(ctx: _Context, event: str) -> None:
    """MDM_T02: messages/ "MDM_T02" (PID, PV1, TXA[DocumentReference], OBX[DocumentReference])."""
    _patient(ctx, _required(ctx, "PID"))
    pv1 = ctx.message.first("PV1")
    if pv1 is not None and pv1.field(19):
        ctx.encounter = _encounter(ctx, pv1, "")
    _document(ctx, _required(ctx, "TXA"))


_FAMILIES: dict[str, Callable[[_Context, str], None]] = {
    "ADT": _adt,
    "ORU": _oru,
    "ORM": _orders,
    "OML": _orders,
    "VXU": _vaccinations,
    "SIU": _schedule,
    "MDM": _documents,
}


def _comps(rep: str, seg: Segment) -> list[str]:
    return components(rep, seg.delims)


def _required(ctx: _Context, name: str) -> Segment:
    seg = ctx.message.first(name)
    if seg is None:
        raise MessageError(f"The message has no {name} segment", error_code="100", location=name)
    return seg


# --- segment maps ---------------------------------------------------------------------------


def _patient(ctx: _Context, pid: Segment) -> str:
    """PID -> Patient: segments/ "PID[Patient]" (PID-3 identifier, PID-5 name, PID-7
    birthDate, PID-8 gender via AdministrativeSex, PID-11 address, PID-13/14 telecom,
    PID-16 maritalStatus via MaritalStatus, PID-29/30 deceased)."""
    idents = [i for i in (ctx.identifier(_comps(r, pid)) for r in pid.reps(3)) if i]
    if not idents:
        raise MessageError(
            "PID-3 (patient identifier list) is required",
            error_code="101",
            location=pid.location(3),
        )
    names = [n for n in (dt.human_name(_comps(r, pid)) for r in pid.reps(5)) if n]
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": idents}
    if names:
        patient["name"] = names
    sex = tables.lookup("AdministrativeSex", pid.text(8))
    if sex:
        patient["gender"] = sex[0]
    birth = dt.date(pid.text(7))
    if birth:
        patient["birthDate"] = birth
    _contacts(pid, 11, (13, 14), patient)
    marital = pid.text(16)
    if marital:
        coding = tables.coding("MaritalStatus", marital)
        patient["maritalStatus"] = (
            {"coding": [coding]}
            if coding
            else dt.codeable(pid.components(16), "http://terminology.hl7.org/CodeSystem/v2-0002")
        )
    died = ctx.time(pid.text(29))
    if died:
        patient["deceasedDateTime"] = died
    elif pid.text(30) in ("Y", "N"):
        patient["deceasedBoolean"] = pid.text(30) == "Y"
    ref = ctx.entries.upsert(patient, identifier_criteria(idents[0]))
    if ctx.patient is None:
        ctx.patient = ref
        ctx.patient_key = identifier_criteria(idents[0]).removeprefix("identifier=")
        ctx.focus.append(ref)
    return ref


def _encounter(ctx: _Context, pv1: Segment, event: str) -> str:
    """PV1 -> Encounter: segments/ "PV1[Encounter]" (PV1-2 class via PatientClass[EncounterClass],
    PV1-3 location, PV1-7/8/17 participants, PV1-19 identifier, PV1-44/45 period); status
    from the event (codesystems/ "Event[EncounterStatus]"), A04 as in-progress."""
    patient_class = pv1.text(2)
    found = tables.coding("PatientClass[EncounterClass]", patient_class)
    klass = found or {
        "system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
        "code": "UNK",
    }
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "status": _encounter_status(pv1, event, patient_class),
        "class": klass,
    }
    ident = ctx.identifier(pv1.components(19))
    if ident:
        enc["identifier"] = [ident]
    if ctx.patient:
        enc["subject"] = {"reference": ctx.patient}
    start, end = ctx.time(pv1.text(44)), ctx.time(pv1.text(45))
    if start or end:
        enc["period"] = dt.clean({"start": start, "end": end})
    where = _location(ctx, pv1.components(3))
    if where:
        enc["location"] = [{"location": where, "status": "active"}]
    participants = []
    for n, role in ((7, "ATND"), (8, "REF"), (17, "ADM")):
        for rep in pv1.reps(n):
            who = _practitioner(ctx, _comps(rep, pv1))
            if who:
                participants.append(
                    {
                        "type": [{"coding": [{"system": PARTICIPATION, "code": role}]}],
                        "individual": who,
                    }
                )
    pv2 = ctx.message.first("PV2")
    if pv2 is not None:
        _visit_details(ctx, pv2, enc, participants)
    if participants:
        enc["participant"] = participants
    if ident:
        ref = ctx.entries.upsert(enc, identifier_criteria(ident))
    else:
        ref = ctx.entries.put(enc, stable_id("Encounter", ctx.sender, ctx.header.control_id))
    ctx.focus.append(ref)
    return ref


def _visit_details(
    ctx: _Context, pv2: Segment, enc: dict[str, Any], participants: list[dict[str, Any]]
) -> None:
    """PV2 -> Encounter: segments/ "PV2[Encounter]" (PV2-3 reasonCode, PV2-11 length in
    days, PV2-13 referral source as a participant, PV2-25 priority)."""
    reason = dt.codeable(pv2.components(3))
    if reason:
        enc["reasonCode"] = [reason]
    days = dt.number(pv2.text(11))
    if days is not None:
        enc["length"] = {"value": days, "unit": "days", "system": dt.UCUM, "code": "d"}
    for rep in pv2.reps(13):
        who = _practitioner(ctx, _comps(rep, pv2))
        if who:
            participants.append(
                {
                    "type": [{"coding": [{"system": PARTICIPATION, "code": "REF"}]}],
                    "individual": who,
                }
            )
    priority = dt.codeable(pv2.components(25), "http://terminology.hl7.org/CodeSystem/v2-0217")
    if priority:
        enc["priority"] = priority


def _location(ctx: _Context, comps: list[str]) -> dict[str, Any] | None:
    """PL -> Location: datatypes/ "PL[Location]" (name from point of care, room, bed,
    facility; one Location per distinct PL of this sender, by an identifier we derive)."""
    name = dt.location_name(comps)
    if not name:
        return None
    ident = _own_id(ctx, "location", "^".join(comps))
    location = {"resourceType": "Location", "name": name, "mode": "instance", "status": "active"}
    return {
        "reference": ctx.entries.upsert(
            _with_identifier(location, ident), identifier_criteria(ident)
        ),
        "display": name,
    }


def _encounter_status(pv1: Segment, event: str, patient_class: str) -> str:
    if event in ("A01", "A04", "A02", "A13"):
        return "in-progress"
    mapped = tables.lookup("Event[EncounterStatus]", event)
    if mapped and mapped[0] != "unknown":
        return mapped[0]
    if pv1.text(45):
        return "finished"
    by_class = tables.lookup("PatientClass[EncounterStatus]", patient_class)
    return by_class[0] if by_class else "unknown"


def _practitioner(ctx: _Context, comps: list[str]) -> dict[str, Any] | None:
    """XCN -> Practitioner: datatypes/ "XCN[Practitioner]"; a reference to a conditional
    update on the identifier, or a display-only reference when XCN-1 is empty."""
    found = dt.practitioner(comps, ctx.systems)
    if found is None:
        return None
    idents = found.get("identifier")
    if not idents:
        name = found["name"][0]
        return {"display": " ".join([*name.get("given", []), name.get("family", "")]).strip()}
    if not idents[0].get("system") and ctx.default_system:
        idents[0]["system"] = ctx.default_system
    return {"reference": ctx.entries.upsert(found, identifier_criteria(idents[0]))}


def _related_person(ctx: _Context, nk1: Segment) -> None:
    """NK1 -> RelatedPerson: segments/ "NK1[RelatedPerson]" (NK1-2 name, NK1-3 relationship
    via Relationship, NK1-4 address, NK1-5/6 telecom, NK1-7 contact role)."""
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": ctx.patient},
    }
    names = [n for n in (dt.human_name(_comps(r, nk1)) for r in nk1.reps(2)) if n]
    if names:
        person["name"] = names
    rel = nk1.text(3)
    if rel:
        coding = tables.coding("Relationship", rel)
        person["relationship"] = [
            {"coding": [coding]}
            if coding
            else dt.codeable(nk1.components(3), "http://terminology.hl7.org/CodeSystem/v2-0063")
        ]
    _contacts(nk1, 4, (5, 6), person)
    key = f"{ctx.patient_key}|NK1|{nk1.text(1) or nk1.occurrence}"
    ident = _own_id(ctx, "nk1", key)
    ctx.focus.append(
        ctx.entries.upsert(_with_identifier(person, ident), identifier_criteria(ident))
    )


def _primary_care(ctx: _Context, pd1: Segment, patient: dict[str, Any]) -> None:
    """PD1 -> Patient: segments/ "PD1[Patient]" (PD1-3 primary facility as an Organization,
    PD1-4 primary care provider as a Practitioner, both in generalPractitioner)."""
    found = [o for o in (_organization(ctx, _comps(r, pd1)) for r in pd1.reps(3)) if o]
    found += [p for p in (_practitioner(ctx, _comps(r, pd1)) for r in pd1.reps(4)) if p]
    if found:
        patient["generalPractitioner"] = found


def _organization(ctx: _Context, comps: list[str]) -> dict[str, Any] | None:
    """XON -> Organization: datatypes/ "XON[Organization]" (XON-1 name, XON-10 identifier
    with XON-6 assigning authority); display-only when it has no identifier."""
    name, id_value = dt.part(comps, 1), dt.part(comps, 10) or dt.part(comps, 3)
    if not id_value:
        return {"display": name} if name else None
    ident = {
        "system": dt.hd_system(dt.part(comps, 6), ctx.systems) or ctx.default_system,
        "value": id_value,
    }
    org = dt.clean(
        {"resourceType": "Organization", "identifier": [dt.clean(ident)], "name": name or None}
    )
    return {"reference": ctx.entries.upsert(org, identifier_criteria(dt.clean(ident)))}


def _procedure(ctx: _Context, pr1: Segment) -> None:
    """PR1 -> Procedure: segments/ "PR1[Procedure]" (PR1-3 code with PR1-4 as its text,
    PR1-5 performed, PR1-8/11/12 performers, PR1-15 reasonCode, PR1-19 identifier);
    status `completed`, as an ADT reports procedures that were done."""
    code = dt.codeable(pr1.components(3))
    text = pr1.text(4)
    if code is None and not text:
        raise MessageError(
            "PR1-3 (procedure code) is required", error_code="101", location=pr1.location(3)
        )
    code = code or {}
    if text and not code.get("text"):
        code["text"] = text
    proc: dict[str, Any] = {
        "resourceType": "Procedure",
        "status": "completed",
        "code": code,
        "subject": {"reference": ctx.patient},
    }
    if ctx.encounter:
        proc["encounter"] = {"reference": ctx.encounter}
    performed = ctx.time(pr1.text(5))
    if performed:
        proc["performedDateTime"] = performed
    performers = []
    for n, role in ((8, "anesthesiologist"), (11, "surgeon"), (12, None)):
        for rep in pr1.reps(n):
            who = _practitioner(ctx, _comps(rep, pr1))
            if who:
                performer: dict[str, Any] = {"actor": who}
                if role:
                    performer["function"] = {"text": role}
                performers.append(performer)
    if performers:
        proc["performer"] = performers
    reason = dt.codeable(pr1.components(15))
    if reason:
        proc["reasonCode"] = [reason]
    given = pr1.components(19)  # EI: the id and its namespace
    ident = ctx.identifier([dt.part(given, 1), "", "", dt.part(given, 2)])
    if ident is None:
        first = (code.get("coding") or [{}])[0]
        key = (
            f"{ctx.patient_key}|PR1|{first.get('system')}|{first.get('code') or text}|{pr1.text(5)}"
        )
        ident = _own_id(ctx, "procedure", key)
    ctx.focus.append(ctx.entries.upsert(_with_identifier(proc, ident), identifier_criteria(ident)))


_SUBSCRIBER = {
    "SEL": "self",
    "SPO": "spouse",
    "DOM": "common",
    "CHD": "child",
    "FCH": "child",
    "SCH": "child",
    "PAR": "parent",
    "FTH": "parent",
    "MTH": "parent",
    "EMC": "other",
    "OTH": "other",
}
"""v2 table 0063 -> http://terminology.hl7.org/CodeSystem/subscriber-relationship (the IG
has no concept map for Coverage.relationship; these are the codes' plain meanings)."""


def _coverage(ctx: _Context, in1: Segment) -> None:
    """IN1 -> Coverage: segments/ "IN1[Coverage]" (IN1-2 identifier, IN1-3/4 payor
    Organization, IN1-12/13 period, IN1-15 type, IN1-17 relationship, IN1-16 subscriber:
    the patient when IN1-17 is SEL); IN1-36 policy number as subscriberId."""
    company_id = in1.components(3)  # CX, read as XON-3 (id) and XON-6 (authority)
    company = _organization(
        ctx,
        [dt.part(in1.components(4), 1), "", dt.part(company_id, 1), "", "", dt.part(company_id, 4)],
    )
    if company is None:
        raise MessageError(
            "IN1-3 or IN1-4 (insurance company) is required",
            error_code="101",
            location=in1.location(3),
        )
    cov: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": "active",
        "beneficiary": {"reference": ctx.patient},
        "payor": [company],
    }
    period = dt.clean({"start": dt.date(in1.text(12)), "end": dt.date(in1.text(13))})
    if period:
        cov["period"] = period
    kind = dt.codeable(in1.components(15), "http://terminology.hl7.org/CodeSystem/v2-0086")
    if kind:
        cov["type"] = kind
    relation = dt.part(in1.components(17), 1)
    if relation:
        mapped = _SUBSCRIBER.get(relation.upper())
        cov["relationship"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                    "code": mapped,
                }
                if mapped
                else {"system": "http://terminology.hl7.org/CodeSystem/v2-0063", "code": relation}
            ]
        }
        if mapped == "self":
            cov["subscriber"] = {"reference": ctx.patient}
    policy = in1.text(36)
    if policy:
        cov["subscriberId"] = policy
    plan_id = in1.components(2)  # CWE: the plan's code and its coding system
    plan = ctx.identifier([dt.part(plan_id, 1), "", "", dt.part(plan_id, 3)])
    key = f"{ctx.patient_key}|IN1|{plan['value'] if plan else ''}|{policy}|{in1.text(1)}"
    ident = _own_id(ctx, "coverage", key)
    if plan:
        cov["identifier"] = [plan]
    ctx.focus.append(ctx.entries.upsert(_with_identifier(cov, ident), identifier_criteria(ident)))


def _contacts(
    seg: Segment, address: int, phones: tuple[int, ...], resource: dict[str, Any]
) -> None:
    """XAD field `address` -> address, XTN fields `phones` -> telecom."""
    addresses = [a for a in (dt.address(_comps(r, seg)) for r in seg.reps(address)) if a]
    if addresses:
        resource["address"] = addresses
    telecom = [
        t for n in phones for t in (dt.contact_point(_comps(r, seg)) for r in seg.reps(n)) if t
    ]
    if telecom:
        resource["telecom"] = telecom


def _own_id(ctx: _Context, kind: str, key: str) -> dict[str, Any]:
    return {"system": ctx.own_system(kind), "value": stable_id(key)}


def _with_identifier(resource: dict[str, Any], ident: dict[str, Any]) -> dict[str, Any]:
    resource.setdefault("identifier", []).append(ident)
    return resource


def _allergy(ctx: _Context, al1: Segment) -> None:
    """AL1 -> AllergyIntolerance: segments/ "AL1[AllergyIntolerance]" (AL1-2 category via
    AllergenType, AL1-3 code, AL1-4 criticality via AllergySeverity, AL1-5 reaction)."""
    code = dt.codeable(al1.components(3))
    if code is None:
        raise MessageError(
            "AL1-3 (allergen) is required", error_code="101", location=al1.location(3)
        )
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": ctx.patient},
        "code": code,
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "active",
                }
            ]
        },
    }
    category = tables.lookup("AllergenType[AllergyIntoleranceCategory]", al1.text(2))
    if category:
        allergy["category"] = [category[0]]
    crit = tables.lookup("AllergySeverity[AllergyIntolerance.criticality]", al1.text(4))
    if crit:
        allergy["criticality"] = crit[0]
    reactions = [{"manifestation": [{"text": r}]} for r in al1.reps(5) if r]
    if reactions:
        allergy["reaction"] = reactions
    onset = dt.date(al1.text(6))
    if onset:
        allergy["onsetDateTime"] = onset
    key = f"{ctx.patient_key}|AL1|{code.get('coding', [{}])[0].get('code') or code.get('text')}"
    ident = _own_id(ctx, "allergy", key)
    ctx.focus.append(
        ctx.entries.upsert(_with_identifier(allergy, ident), identifier_criteria(ident))
    )


def _condition(ctx: _Context, dg1: Segment) -> None:
    """DG1 -> Condition: segments/ "DG1[Condition]" (DG1-3 code, DG1-5 onset, DG1-6 type)."""
    code = dt.codeable(dg1.components(3))
    if code is None:
        text = dg1.text(4)
        if not text:
            raise MessageError(
                "DG1-3 (diagnosis code) is required", error_code="101", location=dg1.location(3)
            )
        code = {"text": text}
    cond: dict[str, Any] = {
        "resourceType": "Condition",
        "subject": {"reference": ctx.patient},
        "code": code,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "encounter-diagnosis",
                    }
                ]
            }
        ],
    }
    if ctx.encounter:
        cond["encounter"] = {"reference": ctx.encounter}
    onset = ctx.time(dg1.text(5))
    if onset:
        cond["onsetDateTime"] = onset
    recorded = ctx.time(dg1.text(19))
    if recorded:
        cond["recordedDate"] = recorded
    first = (code.get("coding") or [{}])[0]
    key = f"{ctx.patient_key}|{ctx.encounter}|DG1|{first.get('system')}|{first.get('code')}"
    ident = _own_id(ctx, "diagnosis", key)
    ctx.focus.append(ctx.entries.upsert(_with_identifier(cond, ident), identifier_criteria(ident)))


def _observation(
    ctx: _Context, obx: Segment, order: str, report: dict[str, Any] | None, specimens: list[str]
) -> str:
    """OBX -> Observation: segments/ "OBX[Observation]" (OBX-2/5 value[x] per value type,
    OBX-3 code, OBX-6 unit, OBX-7 referenceRange, OBX-8 interpretation via
    InterpretationCodes, OBX-11 status via ObservationResultStatusCodesInterpretation,
    OBX-14 effective, OBX-16 performer)."""
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
    _observation_value(ctx, obx, obs)
    ref_range = _reference_range(obx.text(7), obx.components(6))
    if ref_range:
        obs["referenceRange"] = [ref_range]
    flags = []
    for rep in obx.reps(8):
        flag = _comps(rep, obx)[0]
        coding = tables.coding("InterpretationCodes", flag)
        flags.append({"coding": [coding]} if coding else {"text": flag})
    if flags:
        obs["interpretation"] = flags
    performers = [p for p in (_practitioner(ctx, _comps(r, obx)) for r in obx.reps(16)) if p]
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
    ref = ctx.entries.upsert(_with_identifier(obs, ident), identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref


def _observation_value(ctx: _Context, obx: Segment, obs: dict[str, Any]) -> None:
    kind = obx.text(2)
    reps = obx.reps(5)
    if not reps:
        return
    first = _comps(reps[0], obx)
    unit = obx.components(6)
    if kind == "NM":
        value = dt.quantity(first[0], unit)
        if value is not None:
            obs["valueQuantity"] = value
        else:
            obs["valueString"] = first[0]
    elif kind in ("ST", "TX", "FT"):
        obs["valueString"] = "\n".join(
            _comps(r, obx)[0] if kind == "ST" else "^".join(_comps(r, obx)) for r in reps
        )
    elif kind in ("CE", "CWE", "CNE", "CF"):
        concept = dt.codeable(first)
        if concept:
            obs["valueCodeableConcept"] = concept
    elif kind == "SN":
        _structured_numeric(first, unit, obs)
    elif kind in ("DT", "TS", "DTM"):
        when = ctx.time(first[0])
        if when:
            obs["valueDateTime"] = when
    elif kind == "ED":
        attachment = _attachment(first)
        if attachment:
            obs["extension"] = [{"url": ATTACHMENT_EXT, "valueAttachment": attachment}]
    elif kind == "TM":
        obs["valueTime"] = _time_of_day(first[0])
    else:
        obs["valueString"] = "^".join(first)


def _time_of_day(value: str) -> str:
    digits = (value.split("+")[0].split("-")[0].split(".")[0] + "000000")[:6]
    return f"{digits[:2]}:{digits[2:4]}:{digits[4:6]}"


def _structured_numeric(comps: list[str], unit: list[str], obs: dict[str, Any]) -> None:
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


def _attachment(comps: list[str]) -> dict[str, Any] | None:
    """ED -> Attachment: datatypes/ "ED[Attachment]"."""
    kind, subtype, encoding, data = (dt.part(comps, n) for n in (2, 3, 4, 5))
    if not data:
        return None
    major = {
        "AP": "application",
        "IM": "image",
        "AU": "audio",
        "TEXT": "text",
        "MULTIPART": "multipart",
    }.get(kind.upper(), kind.lower() or "application")
    out: dict[str, Any] = {"contentType": f"{major}/{subtype.lower() or 'octet-stream'}"}
    if encoding.upper() == "BASE64":
        out["data"] = data.replace("\n", "")
    else:
        out["data"] = base64.b64encode(data.encode("utf-8")).decode("ascii")
    return out


def _reference_range(text: str, unit: list[str]) -> dict[str, Any] | None:
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


def _order_identifiers(
    ctx: _Context, orc: Segment | None, obr: Segment | None
) -> list[dict[str, Any]]:
    out = []
    for kind, n_orc, n_obr in (("PLAC", 2, 2), ("FILL", 3, 3)):
        comps = (obr.components(n_obr) if obr is not None else []) or (
            orc.components(n_orc) if orc is not None else []
        )
        value = dt.part(comps, 1)
        if not value:
            continue
        system = dt.authority_system(
            dt.part(comps, 2), dt.part(comps, 3), dt.part(comps, 4), ctx.systems
        ) or ctx.own_system("order")
        out.append(
            {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": kind}
                    ]
                },
                "system": system,
                "value": value,
            }
        )
    return out


def _service_request(ctx: _Context, orc: Segment | None, obr: Segment | None) -> str:
    """ORC/OBR -> ServiceRequest: segments/ "ORC[ServiceRequest]", "OBR[ServiceRequest]"
    (ORC-2/OBR-2 placer and ORC-3/OBR-3 filler identifiers, ORC-1/ORC-5 status via
    OrderControlCode[ServiceRequest.status] / OrderStatus, OBR-4 code, ORC-12/OBR-16
    requester)."""
    idents = _order_identifiers(ctx, orc, obr)
    seg = obr or orc
    assert seg is not None
    if not idents:
        raise MessageError(
            "An order needs a placer or filler order number",
            error_code="101",
            location=seg.location(2),
        )
    status = None
    if orc is not None:
        status = tables.lookup("OrderStatus", orc.text(5)) or tables.lookup(
            "OrderControlCode[ServiceRequest.status]", orc.text(1)
        )
    if status is None and obr is not None and obr.text(25):
        status = ("completed", "", "") if obr.text(25) in ("F", "C") else ("active", "", "")
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": idents,
        "status": status[0] if status else "unknown",
        "intent": "order",
    }
    code = dt.codeable(obr.components(4)) if obr is not None else None
    if code:
        request["code"] = code
    if ctx.patient:
        request["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    authored = ctx.time(orc.text(9)) if orc is not None else None
    if authored:
        request["authoredOn"] = authored
    requester = None
    for source, n in ((obr, 16), (orc, 12)):
        if source is not None and source.field(n):
            requester = _practitioner(ctx, source.components(n))
            if requester:
                break
    if requester:
        request["requester"] = requester
    ref = ctx.entries.upsert(request, identifier_criteria(idents[0]))
    ctx.focus.append(ref)
    return ref


def _diagnostic_report(ctx: _Context, orc: Segment | None, obr: Segment, request: str) -> str:
    """OBR -> DiagnosticReport: segments/ "OBR[DiagnosticReport]" (OBR-3 identifier, OBR-4
    code, OBR-7 effective, OBR-22 issued, OBR-25 status via ResultStatus[Non-Queries],
    OBR-32 resultsInterpreter)."""
    code = dt.codeable(obr.components(4))
    if code is None:
        raise MessageError(
            "OBR-4 (universal service identifier) is required",
            error_code="101",
            location=obr.location(4),
        )
    status = tables.lookup("ResultStatus[Non-Queries]", obr.text(25))
    idents = _order_identifiers(ctx, orc, obr)
    filler = next((i for i in idents if i["type"]["coding"][0]["code"] == "FILL"), idents[0])
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{k: v for k, v in filler.items() if k != "type"}],
        "basedOn": [{"reference": request}],
        "status": status[0] if status else "unknown",
        "code": code,
    }
    if ctx.patient:
        report["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        report["encounter"] = {"reference": ctx.encounter}
    effective = ctx.time(obr.text(7))
    if effective:
        report["effectiveDateTime"] = effective
    issued = ctx.time(obr.text(22))
    if issued and "T" in issued:
        report["issued"] = issued
    ref = ctx.entries.upsert(report, identifier_criteria(report["identifier"][0]))
    ctx.focus.append(ref)
    return ref


def _specimen(ctx: _Context, spm: Segment) -> str:
    """SPM -> Specimen: segments/ "SPM[Specimen]" (SPM-2 identifier, SPM-4 type,
    SPM-17 collection time, SPM-18 received time)."""
    specimen: dict[str, Any] = {"resourceType": "Specimen"}
    comps = spm.components(2)
    value = dt.sub(dt.part(comps, 1)) or dt.sub(dt.part(comps, 2))
    ident = {
        "system": ctx.own_system("specimen"),
        "value": value or stable_id(ctx.header.control_id, str(spm.occurrence)),
    }
    specimen["identifier"] = [ident]
    kind = dt.codeable(spm.components(4))
    if kind:
        specimen["type"] = kind
    if ctx.patient:
        specimen["subject"] = {"reference": ctx.patient}
    collected = ctx.time(spm.text(17))
    if collected:
        specimen["collection"] = {"collectedDateTime": collected}
    received = ctx.time(spm.text(18))
    if received:
        specimen["receivedTime"] = received
    ref = ctx.entries.upsert(specimen, identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref


def _note(nte: Segment) -> dict[str, Any] | None:
    """NTE -> Annotation: segments/ "NTE[Observation]" (NTE-3 text)."""
    text = "\n".join(_comps(r, nte)[0] for r in nte.reps(3))
    return {"text": text} if text else None


def _immunization(ctx: _Context, orc: Segment | None, rxa: Segment) -> str:
    """RXA -> Immunization: segments/ "RXA[Immunization]" (RXA-3 occurrence, RXA-5 vaccineCode,
    RXA-6/7 doseQuantity, RXA-10 performer, RXA-15 lotNumber, RXA-16 expirationDate,
    RXA-17 manufacturer, RXA-20 status via CompletionStatus, RXA-21 D: entered-in-error);
    ORC-2/3 identifiers per "ORC[Immunization]"."""
    vaccine = dt.codeable(rxa.components(5))
    if vaccine is None:
        raise MessageError(
            "RXA-5 (administered code) is required", error_code="101", location=rxa.location(5)
        )
    when = ctx.time(rxa.text(3))
    if when is None:
        raise MessageError(
            "RXA-3 (start of administration) is required",
            error_code="101",
            location=rxa.location(3),
        )
    status = tables.lookup("CompletionStatus", rxa.text(20))
    imm: dict[str, Any] = {
        "resourceType": "Immunization",
        "status": "entered-in-error"
        if rxa.text(21) == "D"
        else (status[0] if status else "completed"),
        "vaccineCode": vaccine,
        "patient": {"reference": ctx.patient},
        "occurrenceDateTime": when,
    }
    amount = rxa.text(6)
    if amount and amount != "999":
        dose = dt.quantity(amount, rxa.components(7))
        if dose:
            imm["doseQuantity"] = dose
    who = _practitioner(ctx, rxa.components(10))
    if who:
        imm["performer"] = [
            {
                "function": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP"}
                    ]
                },
                "actor": who,
            }
        ]
    if rxa.text(15):
        imm["lotNumber"] = rxa.text(15)
    expires = dt.date(rxa.text(16))
    if expires:
        imm["expirationDate"] = expires
    maker = dt.codeable(rxa.components(17))
    if maker:
        first = (maker.get("coding") or [{}])[0]
        imm["manufacturer"] = dt.clean(
            {
                "display": first.get("display") or maker.get("text"),
                "identifier": dt.clean({"system": first.get("system"), "value": first.get("code")}),
            }
        )
    idents = _order_identifiers(ctx, orc, None)
    if idents:
        imm["identifier"] = idents
        criteria = identifier_criteria(idents[0])
    else:
        first = (vaccine.get("coding") or [{}])[0]
        ident = _own_id(ctx, "immunization", f"{ctx.patient_key}|{first.get('code')}|{when}")
        imm["identifier"] = [ident]
        criteria = identifier_criteria(ident)
    ref = ctx.entries.upsert(imm, criteria)
    ctx.focus.append(ref)
    return ref


def _appointment(ctx: _Context, sch: Segment, event: str) -> str:
    """SCH -> Appointment: segments/ "SCH[Appointment]" (SCH-1/2 identifiers, SCH-7 reason,
    SCH-8 appointmentType, SCH-11 or TQ1-7/8 start/end, SCH-25 status via
    FillerStatusCodes[Appointment]); participants from "AIP[Appointment]",
    "AIL[Appointment]" and "PID[Appointment]"."""
    idents = []
    for n, kind in ((1, "PLAC"), (2, "FILL")):
        comps = sch.components(n)
        if dt.part(comps, 1):
            idents.append(
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": kind,
                            }
                        ]
                    },
                    "system": dt.authority_system(
                        dt.part(comps, 2), dt.part(comps, 3), dt.part(comps, 4), ctx.systems
                    )
                    or ctx.own_system("appointment"),
                    "value": dt.part(comps, 1),
                }
            )
    if not idents:
        raise MessageError(
            "SCH-1 or SCH-2 (appointment id) is required",
            error_code="101",
            location=sch.location(2),
        )
    status = tables.lookup("FillerStatusCodes[Appointment]", sch.text(25))
    default = {"S15": "cancelled", "S26": "noshow"}.get(event, "booked")
    appt: dict[str, Any] = {
        "resourceType": "Appointment",
        "identifier": idents,
        "status": status[0] if status else default,
    }
    reason = dt.codeable(sch.components(7))
    if reason:
        appt["reasonCode"] = [reason]
    appointment_type = dt.codeable(sch.components(8))
    if appointment_type:
        appt["appointmentType"] = appointment_type
    tq1 = ctx.message.first("TQ1")
    timing = sch.components(11)
    start = ctx.time(tq1.text(7) if tq1 is not None else dt.part(timing, 4))
    end = ctx.time(tq1.text(8) if tq1 is not None else dt.part(timing, 5))
    if start and "T" in start:
        appt["start"] = start
    if end and "T" in end:
        appt["end"] = end
    if sch.text(9).isdigit():
        appt["minutesDuration"] = int(sch.text(9))
    participants = []
    if ctx.patient:
        participants.append({"actor": {"reference": ctx.patient}, "status": "accepted"})
    for seg in ctx.message.segments:
        if seg.name == "AIP":
            who = _practitioner(ctx, seg.components(3))
            if who:
                participants.append({"actor": who, "status": "accepted"})
        elif seg.name == "AIL":
            where = dt.location_name(seg.components(3))
            if where:
                participants.append({"actor": {"display": where}, "status": "accepted"})
    if not participants:
        raise MessageError(
            "An appointment needs a patient, AIP or AIL participant",
            error_code="100",
            location="PID",
        )
    appt["participant"] = participants
    ref = ctx.entries.upsert(appt, identifier_criteria(idents[-1]))
    ctx.focus.append(ref)
    return ref


def _document(ctx: _Context, txa: Segment) -> str:
    """TXA -> DocumentReference: segments/ "TXA[DocumentReference]" (TXA-2 type, TXA-3
    contentType, TXA-6 date, TXA-9 author, TXA-10 authenticator, TXA-12 masterIdentifier,
    TXA-17 docStatus, TXA-18 securityLabel via DocumentConfidentialityStatus, TXA-19 status,
    TXA-25 description); the OBX-5 text ("OBX[DocumentReference]") as a Binary."""
    number = txa.components(12)
    value = dt.part(number, 1)
    if not value:
        raise MessageError(
            "TXA-12 (unique document number) is required",
            error_code="101",
            location=txa.location(12),
        )
    master = {
        "system": dt.authority_system(
            dt.part(number, 2), dt.part(number, 3), dt.part(number, 4), ctx.systems
        )
        or ctx.own_system("document"),
        "value": value,
    }
    availability = txa.text(19)
    doc: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "masterIdentifier": master,
        "identifier": [master],
        "status": "superseded"
        if availability in ("OB",)
        else ("entered-in-error" if availability in ("CA",) else "current"),
        "subject": {"reference": ctx.patient},
    }
    completion = txa.text(17)
    if completion:
        doc["docStatus"] = (
            "final"
            if completion in ("AU", "LA")
            else ("amended" if completion == "AM" else "preliminary")
        )
    kind = dt.codeable(txa.components(2), "http://terminology.hl7.org/CodeSystem/v2-0270")
    if kind:
        doc["type"] = kind
    created = ctx.time(txa.text(6)) or ctx.time(txa.text(4))
    if created and "T" in created:
        doc["date"] = created
    authors = [a for a in (_practitioner(ctx, _comps(r, txa)) for r in txa.reps(9)) if a]
    if authors:
        doc["author"] = authors
    signer = _practitioner(ctx, txa.components(10))
    if signer:
        doc["authenticator"] = signer
    label = tables.coding("DocumentConfidentialityStatus", txa.text(18))
    if label:
        doc["securityLabel"] = [{"coding": [label]}]
    if txa.text(25):
        doc["description"] = txa.text(25)
    if ctx.encounter:
        doc["context"] = {"encounter": [{"reference": ctx.encounter}]}
    lines: list[str] = []
    attachment: dict[str, Any] | None = None
    for seg in ctx.message.segments:
        if seg.name != "OBX":
            continue
        if seg.text(2) == "ED":
            attachment = _attachment(seg.components(5))
        else:
            lines.extend("^".join(_comps(r, seg)) for r in seg.reps(5))
    content_type = (
        attachment["contentType"]
        if attachment
        else {"TX": "text/plain", "FT": "text/plain", "HTML": "text/html"}.get(
            txa.text(3), "text/plain"
        )
    )
    data = (
        attachment["data"]
        if attachment
        else base64.b64encode("\n".join(lines).encode("utf-8")).decode("ascii")
    )
    binary = ctx.entries.put(
        {"resourceType": "Binary", "contentType": content_type, "data": data},
        stable_id("DocumentReference", master["system"], value, data),
    )
    doc["content"] = [{"attachment": {"contentType": content_type, "url": binary}}]
    ref = ctx.entries.upsert(doc, identifier_criteria(master))
    ctx.focus.append(ref)
    return ref


# --- the message itself ---------------------------------------------------------------------


def _message_ids(ctx: _Context) -> str:
    digest = hashlib.sha256(ctx.payload).hexdigest()
    return stable_id(ctx.sender, ctx.header.control_id, digest)


def _endpoint(application: str, facility: str) -> str:
    name = "/".join(p for p in (application.split("^")[0], facility.split("^")[0]) if p)
    return f"urn:id:{quote(name or 'unknown', safe='')}"


def _message_header(ctx: _Context) -> None:
    """MSH -> MessageHeader: segments/ "MSH[MessageHeader]" (MSH-3/4 source, MSH-5/6
    destination, MSH-9 event)."""
    h = ctx.header
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "eventCoding": {"system": EVENT_SYSTEM, "code": h.trigger_event},
        "source": dt.clean(
            {
                "name": h.sending_application.split("^")[0] or None,
                "endpoint": _endpoint(h.sending_application, h.sending_facility),
            }
        ),
    }
    if h.receiving_application or h.receiving_facility:
        header["destination"] = [
            dt.clean(
                {
                    "name": h.receiving_application.split("^")[0] or None,
                    "endpoint": _endpoint(h.receiving_application, h.receiving_facility),
                }
            )
        ]
    if ctx.focus:
        header["focus"] = [{"reference": ref} for ref in dict.fromkeys(ctx.focus)]
    ctx.entries.put(header, _message_ids(ctx))


def _provenance(ctx: _Context) -> None:
    """MSH -> Provenance: segments/ "MSH[Provenance-Source]" (recorded from MSH-7, the
    message kept as a Binary entity, every resource of the transaction as a target)."""
    h = ctx.header
    ids = _message_ids(ctx)
    targets = [{"reference": ref} for ref in ctx.entries.references()]
    binary = ctx.entries.put(
        {
            "resourceType": "Binary",
            "contentType": V2_MESSAGE,
            "data": base64.b64encode(ctx.payload).decode("ascii"),
        },
        ids,
    )
    recorded = ctx.time(h.timestamp)
    if recorded is None:
        raise MessageError(
            "MSH-7 (date/time of message) is required", error_code="101", location="MSH^1^7"
        )
    if "T" not in recorded:
        recorded = dt.date_time(h.timestamp[:8] + "000000", ctx.zone) or recorded
    ctx.entries.put(
        {
            "resourceType": "Provenance",
            "target": targets,
            "recorded": recorded,
            "activity": {"coding": [{"system": EVENT_SYSTEM, "code": h.trigger_event}]},
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "author",
                            }
                        ]
                    },
                    "who": {"display": ctx.sender},
                }
            ],
            "entity": [{"role": "source", "what": {"reference": binary}}],
        },
        ids,
    )


__all__ = ["Conversion", "ConvertOptions", "MessageError", "convert"]
