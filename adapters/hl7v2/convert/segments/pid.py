"""PID and PD1 -> Patient: segments/ "PID[Patient]", "PD1[Patient]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, rep_components
from adapters.hl7v2.convert.datatypes import add_contacts, organization_ref, practitioner_ref
from adapters.hl7v2.message import MessageError, Segment


def map_patient(ctx: Context, pid: Segment) -> str:
    """PID -> Patient: segments/ "PID[Patient]" (PID-3 identifier, PID-5 name, PID-7
    birthDate, PID-8 gender via AdministrativeSex, PID-11 address, PID-13/14 telecom,
    PID-16 maritalStatus via MaritalStatus, PID-29/30 deceased)."""
    ctx.at(pid)
    idents = patient_identifiers(ctx, pid)
    names = [n for n in (dt.human_name(rep_components(r, pid)) for r in pid.reps(5)) if n]
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": idents}
    if names:
        patient["name"] = names
    sex = tables.lookup("AdministrativeSex", pid.text(8))
    if sex:
        patient["gender"] = sex[0]
    birth = dt.date(pid.text(7))
    if birth:
        patient["birthDate"] = birth
    add_contacts(pid, 11, (13, 14), patient)
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
    _details(pid, patient)
    ref = ctx.entries.upsert(patient, identifier_criteria(idents[0]))
    if ctx.patient is None:
        ctx.patient = ref
        ctx.patient_key = identifier_criteria(idents[0]).removeprefix("identifier=")
        ctx.focus.append(ref)
        if pid.field(21):
            _mother(ctx, pid)
    return ref


def _mother(ctx: Context, pid: Segment) -> None:
    """PID-21 mother's identifier -> RelatedPerson: datatypes/ "CX[RelatedPerson-Mother]"
    (the identifier, relationship MTH, the patient)."""
    ident = ctx.identifier(pid.components(21), pid.location(21))
    if ident is None:
        return
    mother = {
        "resourceType": "RelatedPerson",
        "identifier": [ident],
        "patient": {"reference": ctx.patient},
        "relationship": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}
                ]
            }
        ],
    }
    ctx.focus.append(ctx.entries.upsert(mother, identifier_criteria(ident)))


def map_primary_care(ctx: Context, pd1: Segment, patient: dict[str, Any]) -> None:
    """PD1 -> Patient: segments/ "PD1[Patient]" (PD1-3 primary facility as an Organization,
    PD1-4 primary care provider as a Practitioner, both in generalPractitioner)."""
    ctx.at(pd1)
    found = [o for o in (organization_ref(ctx, rep_components(r, pd1)) for r in pd1.reps(3)) if o]
    found += [p for p in (practitioner_ref(ctx, rep_components(r, pd1)) for r in pd1.reps(4)) if p]
    if found:
        patient["generalPractitioner"] = found


def patient_identifiers(ctx: Context, pid: Segment) -> list[dict[str, Any]]:
    """PID-3, or for older feeds (v2.3 and before) that leave it empty, PID-2 (patient id)
    and PID-4 (alternate patient id), as the IG's notes on PID[Patient] allow."""
    for n in (3, 2, 4):
        found = [
            i
            for i in (ctx.identifier(rep_components(r, pid), pid.location(n)) for r in pid.reps(n))
            if i
        ]
        if found:
            return found
    raise MessageError(
        "PID-3 (patient identifier list) is required", error_code="101", location=pid.location(3)
    )


def map_account(ctx: Context, pid: Segment) -> str | None:
    """PID-18 -> Account: segments/ "PID[Account]" (PID-18 identifier, the patient as
    subject, status active)."""
    ident = ctx.identifier(pid.components(18), pid.location(18))
    if ident is None:
        return None
    account: dict[str, Any] = {"resourceType": "Account", "identifier": [ident], "status": "active"}
    if ctx.patient:
        account["subject"] = [{"reference": ctx.patient}]
    ref = ctx.entries.upsert(account, identifier_criteria(ident))
    ctx.focus.append(ref)
    return ref


US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"
RELIGION = "http://hl7.org/fhir/StructureDefinition/patient-religion"
SSN = "http://hl7.org/fhir/sid/us-ssn"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CDC_RACE = "urn:oid:2.16.840.1.113883.6.238"


def _details(pid: Segment, patient: dict[str, Any]) -> None:
    """PID-10 race and PID-22 ethnicity (as the US Core extensions the IG points to), PID-15
    communication language, PID-17 religion, PID-19 SSN as an identifier, PID-24/25
    multiple birth."""
    extensions = [
        e
        for e in (
            _omb(US_CORE + "us-core-race", pid, 10),
            _omb(US_CORE + "us-core-ethnicity", pid, 22),
        )
        if e
    ]
    religion = dt.codeable(pid.components(17), "http://terminology.hl7.org/CodeSystem/v2-0006")
    if religion:
        extensions.append({"url": RELIGION, "valueCodeableConcept": religion})
    if extensions:
        patient["extension"] = extensions
    language = dt.codeable(pid.components(15))
    if language:
        patient["communication"] = [{"language": language}]
    ssn = pid.text(19)
    if ssn:
        patient["identifier"].append(
            {"type": {"coding": [{"system": V2_0203, "code": "SS"}]}, "system": SSN, "value": ssn}
        )
    order = dt.number(pid.text(25))
    if isinstance(order, int) and order > 0:
        patient["multipleBirthInteger"] = order
    elif pid.text(24) in ("Y", "N"):
        patient["multipleBirthBoolean"] = pid.text(24) == "Y"


def _omb(url: str, pid: Segment, field: int) -> dict[str, Any] | None:
    """Race or ethnicity as a US Core extension: each coded repetition an ombCategory
    (CDC race and ethnicity codes), the text of the first."""
    parts: list[dict[str, Any]] = []
    text = ""
    for n in range(len(pid.reps(field))):
        concept = dt.codeable(pid.components(field, n), CDC_RACE)
        if concept is None:
            continue
        text = text or concept.get("text") or concept.get("coding", [{}])[0].get("display", "")
        for coding in concept.get("coding", [])[:1]:
            parts.append({"url": "ombCategory", "valueCoding": coding})
    if not parts:
        return None
    parts.append({"url": "text", "valueString": text or parts[0]["valueCoding"]["code"]})
    return {"url": url, "extension": parts}
