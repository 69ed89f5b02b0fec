"""PR1 -> Procedure: segments/ "PR1[Procedure]"."""

from __future__ import annotations

from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, rep_components, with_identifier
from adapters.hl7v2.convert.datatypes import practitioner_ref
from adapters.hl7v2.message import MessageError, Segment


def map_procedure(ctx: Context, pr1: Segment) -> None:
    """PR1 -> Procedure: segments/ "PR1[Procedure]" (PR1-3 code with PR1-4 as its text,
    PR1-5 performed, PR1-8/11/12 performers, PR1-15 reasonCode, PR1-19 identifier);
    status `completed`, as an ADT reports procedures that were done."""
    ctx.at(pr1)
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
            who = practitioner_ref(ctx, rep_components(rep, pr1))
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
    ident = ctx.identifier([dt.part(given, 1), "", "", dt.part(given, 2)], pr1.location(19))
    if ident is None:
        first = (code.get("coding") or [{}])[0]
        key = (
            f"{ctx.patient_key}|PR1|{first.get('system')}|{first.get('code') or text}|{pr1.text(5)}"
        )
        ident = own_id(ctx, "procedure", key)
    ctx.focus.append(ctx.entries.upsert(with_identifier(proc, ident), identifier_criteria(ident)))
