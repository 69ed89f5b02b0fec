"""MSH -> MessageHeader and Provenance: segments/ "MSH[MessageHeader]",
"MSH[Provenance-Source]"."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria, stable_id
from adapters.hl7v2.convert.context import EVENT_SYSTEM, V2_MESSAGE, Context
from adapters.hl7v2.convert.datatypes import practitioner_ref
from adapters.hl7v2.message import MessageError


def message_ids(ctx: Context) -> str:
    digest = hashlib.sha256(ctx.payload).hexdigest()
    return stable_id(ctx.sender, ctx.header.control_id, digest)


def endpoint_urn(application: str, facility: str) -> str:
    name = "/".join(p for p in (application.split("^")[0], facility.split("^")[0]) if p)
    return f"urn:id:{quote(name or 'unknown', safe='')}"


def map_message_header(ctx: Context) -> None:
    """MSH -> MessageHeader: segments/ "MSH[MessageHeader]" (MSH-3/4 source, MSH-5/6
    destination, MSH-9 event)."""
    ctx.entries.source = "MSH^1"
    h = ctx.header
    header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "eventCoding": {"system": EVENT_SYSTEM, "code": h.trigger_event},
        "source": dt.clean(
            {
                "name": h.sending_application.split("^")[0] or None,
                "endpoint": endpoint_urn(h.sending_application, h.sending_facility),
            }
        ),
    }
    if h.receiving_application or h.receiving_facility:
        header["destination"] = [
            dt.clean(
                {
                    "name": h.receiving_application.split("^")[0] or None,
                    "endpoint": endpoint_urn(h.receiving_application, h.receiving_facility),
                }
            )
        ]
    _party(ctx, "Device", h.sending_application)  # the Provenance's agent
    sender = _party(ctx, "Organization", h.sending_facility)
    if sender:
        header["sender"] = {"reference": sender}
    target = _party(ctx, "Device", h.receiving_application)
    if target and "destination" in header:
        header["destination"][0]["target"] = {"reference": target}
    if ctx.focus:
        header["focus"] = [{"reference": ref} for ref in dict.fromkeys(ctx.focus)]
    ctx.entries.put(header, message_ids(ctx))


def _party(ctx: Context, kind: str, hd: str) -> str | None:
    """An HD of MSH (MSH-4 facility, MSH-3/5 application) as an Organization or Device,
    identified by the URI the HD names (`urn:oid:...`, or `urn:id:` + its namespace)."""
    parts = hd.split("^")
    namespace = parts[0]
    uri = dt.authority_system(
        namespace, parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else "", {}
    )
    if not uri:
        return None
    ident = {"system": "urn:ietf:rfc:3986", "value": uri}
    party: dict[str, Any] = {"resourceType": kind, "identifier": [ident]}
    if namespace and kind == "Organization":
        party["name"] = namespace
    elif namespace:
        party["deviceName"] = [{"name": namespace, "type": "user-friendly-name"}]
    return ctx.entries.upsert(party, identifier_criteria(ident))


PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


def map_provenance(ctx: Context) -> None:
    """MSH -> Provenance: segments/ "MSH[Provenance-Source]" (recorded from MSH-7, the
    message kept as a Binary entity, every resource of the transaction as a target), with
    the EVN-5 operator as an agent."""
    h = ctx.header
    ids = message_ids(ctx)
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
    provenance = ctx.entries.put(
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
                                "system": PARTICIPANT_TYPE,
                                "code": "author",
                            }
                        ]
                    },
                    "who": _agent(ctx),
                }
            ],
            "entity": [{"role": "source", "what": {"reference": binary}}],
        },
        ids,
    )
    operator = _operator(ctx)
    if operator is not None:
        ctx.entries.resource(provenance)["agent"].append(operator)


def _operator(ctx: Context) -> dict[str, Any] | None:
    """EVN-5 operator -> Provenance agent: segments/ "EVN[Provenance]" (agent.who a
    Practitioner, type enterer)."""
    evn = ctx.message.first("EVN")
    if evn is None or not evn.field(5):
        return None
    ctx.at(evn)
    who = practitioner_ref(ctx, evn.components(5))
    if who is None:
        return None
    return {"type": {"coding": [{"system": PARTICIPANT_TYPE, "code": "enterer"}]}, "who": who}


def _agent(ctx: Context) -> dict[str, Any]:
    """The sending application (MSH-3) as a Device, on behalf of the facility (MSH-4)."""
    h = ctx.header
    device = _party(ctx, "Device", h.sending_application)
    return {"reference": device, "display": ctx.sender} if device else {"display": ctx.sender}
