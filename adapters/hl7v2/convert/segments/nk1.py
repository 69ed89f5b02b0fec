"""NK1 -> RelatedPerson: segments/ "NK1[RelatedPerson]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2 import tables
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, rep_components, with_identifier
from adapters.hl7v2.convert.datatypes import add_contacts
from adapters.hl7v2.message import Segment


def map_related_person(ctx: Context, nk1: Segment) -> None:
    """NK1 -> RelatedPerson: segments/ "NK1[RelatedPerson]" (NK1-2 name, NK1-3 relationship
    via Relationship, NK1-4 address, NK1-5/6 telecom, NK1-7 contact role)."""
    ctx.at(nk1)
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "patient": {"reference": ctx.patient},
    }
    names = [n for n in (dt.human_name(rep_components(r, nk1)) for r in nk1.reps(2)) if n]
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
    add_contacts(nk1, 4, (5, 6), person)
    key = f"{ctx.patient_key}|NK1|{nk1.text(1) or nk1.occurrence}"
    ident = own_id(ctx, "nk1", key)
    ctx.focus.append(ctx.entries.upsert(with_identifier(person, ident), identifier_criteria(ident)))
