"""GT1 -> RelatedPerson and Account.guarantor (the IG has no GT1 map yet; this follows its
NK1[RelatedPerson] map for the person and FHIR's Account.guarantor for the role)."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, rep_components, with_identifier
from adapters.hl7v2.convert.datatypes import add_contacts
from adapters.hl7v2.message import MessageError, Segment

_SELF = "SEL"


def map_guarantor(ctx: Context, gt1: Segment) -> None:
    """GT1-3 name, GT1-5 address, GT1-6/7 phones, GT1-11 relationship (table 0063) as a
    RelatedPerson (the Patient itself when GT1-11 is SEL), guarantor of the PID-18 Account,
    or, without one, of an Account for the patient's guarantor, for GT1-13/14 (period)."""
    ctx.at(gt1)
    if ctx.patient is None:
        raise MessageError(
            "A guarantor (GT1) needs the patient (PID) it is for", error_code="100", location="PID"
        )
    relationship = gt1.text(11)
    if relationship == _SELF:
        party = {"reference": ctx.patient}
    else:
        names = [n for n in (dt.human_name(rep_components(r, gt1)) for r in gt1.reps(3)) if n]
        if not names:
            raise MessageError(
                "GT1-3 (guarantor name) is required", error_code="101", location=gt1.location(3)
            )
        person: dict[str, Any] = {
            "resourceType": "RelatedPerson",
            "patient": {"reference": ctx.patient},
            "name": names,
        }
        if relationship:
            coding = tables.coding("Relationship", relationship)
            person["relationship"] = [
                {"coding": [coding]}
                if coding
                else dt.codeable(
                    gt1.components(11), "http://terminology.hl7.org/CodeSystem/v2-0063"
                )
            ]
        add_contacts(gt1, 5, (6, 7), person)
        key = f"{ctx.patient_key}|GT1|{gt1.text(2) or gt1.text(3)}"
        ident = own_id(ctx, "guarantor", key)
        party = {
            "reference": ctx.entries.upsert(
                with_identifier(person, ident), identifier_criteria(ident)
            )
        }
    guarantor: dict[str, Any] = {"party": party}
    period = dt.clean({"start": dt.date(gt1.text(13)), "end": dt.date(gt1.text(14))})
    if period:
        guarantor["period"] = period
    if ctx.account is None:
        ident = own_id(ctx, "guarantor-account", f"{ctx.patient_key}")
        account = {
            "resourceType": "Account",
            "status": "active",
            "subject": [{"reference": ctx.patient}],
        }
        ctx.account = ctx.entries.upsert(
            with_identifier(account, ident), identifier_criteria(ident)
        )
    ctx.entries.resource(ctx.account).setdefault("guarantor", []).append(guarantor)
