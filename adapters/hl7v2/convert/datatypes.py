"""Datatype maps that make resources: XCN[Practitioner], XON[Organization], PL[Location],
XAD/XTN on a resource, ED[Attachment]."""

from __future__ import annotations

import base64
from typing import Any

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import identifier_criteria
from adapters.hl7v2.convert.context import Context, own_id, rep_components, with_identifier
from adapters.hl7v2.message import Segment


def practitioner_ref(ctx: Context, comps: list[str]) -> dict[str, Any] | None:
    """XCN -> Practitioner: datatypes/ "XCN[Practitioner]"; a reference to a conditional
    update on the identifier, or a display-only reference when XCN-1 is empty."""
    found = dt.practitioner(comps, ctx.systems)
    if found is None:
        return None
    idents: list[dict[str, Any]] = found.get("identifier") or []
    if idents and not idents[0].get("system"):
        idents[0]["system"] = ctx.default_system
    if not idents or not idents[0]["system"]:  # nothing to match on safely: a display only
        names = found.get("name") or [{}]
        given = " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
        return {"display": given or idents[0]["value"]} if (given or idents) else None
    return {"reference": ctx.entries.upsert(found, identifier_criteria(idents[0]))}


def practitioner_role_ref(
    ctx: Context,
    comps: list[str],
    code: tuple[str, str] | None = None,
    organization: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """XCN -> PractitionerRole: datatypes/ "XCN[PractitionerRole]": the person (XCN[Practitioner])
    in a role (`code`: system, code) and, when the segment names one, for an organization;
    None when the XCN names nobody. One PractitionerRole per person, role and organization,
    identified by them, so naming the same doctor again makes no second one."""
    who = practitioner_ref(ctx, comps)
    if who is None:
        return None
    role: dict[str, Any] = {"resourceType": "PractitionerRole", "practitioner": who}
    if code is not None:
        role["code"] = [{"coding": [{"system": code[0], "code": code[1]}]}]
    if organization is not None:
        role["organization"] = organization
    key = "|".join(
        (
            str(who.get("reference") or who.get("display")),
            code[1] if code else "",
            str((organization or {}).get("reference") or (organization or {}).get("display") or ""),
        )
    )
    ident = own_id(ctx, "practitioner-role", key)
    return {
        "reference": ctx.entries.upsert(with_identifier(role, ident), identifier_criteria(ident))
    }


def organization_ref(ctx: Context, comps: list[str]) -> dict[str, Any] | None:
    """XON -> Organization: datatypes/ "XON[Organization]" (XON-1 name, XON-10 identifier
    with XON-6 assigning authority); display-only when it has no identifier."""
    name, id_value = dt.part(comps, 1), dt.part(comps, 10) or dt.part(comps, 3)
    if not id_value:
        return {"display": name} if name else None
    system = dt.hd_system(dt.whole(comps, 6), ctx.systems) or ctx.default_system
    if not system:  # an id no system qualifies would match any organization's
        return {"display": name or id_value}
    ident = {"system": system, "value": id_value}
    org = dt.clean({"resourceType": "Organization", "identifier": [ident], "name": name or None})
    return {"reference": ctx.entries.upsert(org, identifier_criteria(ident))}


def location_ref(ctx: Context, comps: list[str]) -> dict[str, Any] | None:
    """PL -> Location: datatypes/ "PL[Location]": one Location per level the PL names, from
    the facility (PL.4) through building (PL.7), point of care (PL.1), floor (PL.8) and
    room (PL.2) to the bed (PL.3), each `partOf` the one above; a reference to the most
    granular. Each level is identified by its path from the top (room 12 of ward W1 is not
    room 12 of ward W2), so the same place is one Location however often it is named."""
    name = dt.location_name(comps)
    if not name:
        return None
    parent: str | None = None
    path: list[str] = []
    for n, kind in _PL_LEVELS:
        value = dt.sub(dt.whole(comps, n)) if n in (1, 2, 3, 4, 7, 8) else ""
        if not value:
            continue
        path.append(f"{kind}:{value}")
        ident = own_id(ctx, "location", "/".join(path))
        location: dict[str, Any] = {
            "resourceType": "Location",
            "name": value,
            "mode": "instance",
            "status": "active",
            "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": kind}]},
        }
        if parent:
            location["partOf"] = {"reference": parent}
        parent = ctx.entries.upsert(with_identifier(location, ident), identifier_criteria(ident))
    return {"reference": parent, "display": name} if parent else None


PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
_PL_LEVELS = ((4, "si"), (7, "bu"), (1, "wa"), (8, "lvl"), (2, "ro"), (3, "bd"))
"""PL components from the least granular to the most, with their physical type."""


def add_contacts(
    seg: Segment, address: int, phones: tuple[int, ...], resource: dict[str, Any]
) -> None:
    """XAD field `address` -> address, XTN fields `phones` -> telecom."""
    addresses = [a for a in (dt.address(rep_components(r, seg)) for r in seg.reps(address)) if a]
    if addresses:
        resource["address"] = addresses
    telecom = [
        t
        for n in phones
        for t in (dt.contact_point(rep_components(r, seg)) for r in seg.reps(n))
        if t
    ]
    if telecom:
        resource["telecom"] = telecom


def ed_attachment(comps: list[str]) -> dict[str, Any] | None:
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
