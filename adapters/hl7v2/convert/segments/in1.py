"""IN1 -> Coverage: segments/ "IN1[Coverage]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, rep_components, with_identifier
from adapters.hl7v2.convert.datatypes import organization_ref
from adapters.hl7v2.convert.vocabulary import SUBSCRIBER
from adapters.hl7v2.message import MessageError, Segment


def map_coverage(ctx: Context, in1: Segment) -> None:
    """IN1 -> Coverage: segments/ "IN1[Coverage]" (IN1-2 identifier, IN1-3/4 payor
    Organization, IN1-12/13 period, IN1-15 type, IN1-17 relationship, IN1-16 subscriber:
    the patient when IN1-17 is SEL); IN1-36 policy number as subscriberId."""
    ctx.at(in1)
    company_id = in1.components(3)  # CX, read as XON-3 (id) and XON-6 (authority)
    company = organization_ref(
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
        mapped = SUBSCRIBER.get(relation.upper())
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
        else:
            insured = _insured(ctx, in1)
            if insured:
                cov["subscriber"] = {"reference": insured}
    policy = in1.text(36)
    if policy:
        cov["subscriberId"] = policy
    plan_id = in1.components(2)  # CWE: the plan's code and its coding system
    plan = ctx.identifier([dt.part(plan_id, 1), "", "", dt.part(plan_id, 3)], in1.location(2))
    key = f"{ctx.patient_key}|IN1|{plan['value'] if plan else ''}|{policy}|{in1.text(1)}"
    ident = own_id(ctx, "coverage", key)
    if plan:
        cov["identifier"] = [plan]
    ctx.focus.append(ctx.entries.upsert(with_identifier(cov, ident), identifier_criteria(ident)))


def _insured(ctx: Context, in1: Segment) -> str | None:
    """IN1-16 insured's name (with IN1-17 relationship, IN1-18 birth date, IN1-19 address),
    when the insured is not the patient, as a RelatedPerson: IN1[Coverage] subscriber."""
    names = [n for n in (dt.human_name(rep_components(r, in1)) for r in in1.reps(16)) if n]
    if not names or not ctx.patient:
        return None
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": ctx.patient},
        "name": names,
    }
    relation = dt.codeable(in1.components(17), "http://terminology.hl7.org/CodeSystem/v2-0063")
    if relation:
        person["relationship"] = [relation]
    born = dt.date(in1.text(18))
    if born:
        person["birthDate"] = born
    addresses = [a for a in (dt.address(rep_components(r, in1)) for r in in1.reps(19)) if a]
    if addresses:
        person["address"] = addresses
    name = names[0]
    key = f"{ctx.patient_key}|IN1-16|{name.get('family')}|{name.get('given')}|{in1.text(18)}"
    ident = own_id(ctx, "insured", key)
    return ctx.entries.upsert(with_identifier(person, ident), identifier_criteria(ident))
