"""The patient and encounter pickers of a standalone launch, and the checks of a launch's
patient: every lookup goes through the FHIR service with the signed-in user's rights.

The user's `AccessContext` carries the scopes their role may grant (`roles.role_scopes`),
their role and FHIR identity (`fhirUser`) and, for a patient user, their own Patient as the
compartment: the service's access policy decides what they see, as it would for a token
the user granted. A practitioner who is not an admin is, by default
(`FHIR_AUTH_CLINICIAN_SCOPE=organization`), offered the patients of the organizations their
PractitionerRoles name; `all` offers every patient their rights reach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fhir_server.auth.roles import role_scopes
from fhir_server.auth.users import User
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson

PAGE = 20


@dataclass(frozen=True, slots=True)
class Choice:
    """One row of a picker: the resource id and what the user reads to choose it."""

    id: str
    label: str
    detail: str


def user_context(user: User, patient: str | None = None) -> AccessContext:
    """The user's rights for lookups made on their behalf (`patient`: the compartment of
    their `patient/` scopes)."""
    return AccessContext(
        subject=user.id,
        scopes=role_scopes(user.role),
        patient=patient,
        fhir_user=user.fhir_user,
        role=user.role,
    )


async def _user_context(service: FhirService, user: User) -> AccessContext:
    """`user_context` with a patient user's own record as the compartment."""
    own = await own_patient(service, user) if user.role == "patient" else None
    return user_context(user, own)


async def _call(
    service: FhirService, ctx: AccessContext, path: str, query: list[tuple[str, str]]
) -> dict[str, Any] | None:
    try:
        result = await service.handle(
            Request(
                method="GET",
                path=path,
                query=tuple(query),
                context=ctx,
                base=service.base_url or "",
            )
        )
    except FhirError:  # not found, not permitted, bad id: nothing to offer
        return None
    if result.status != 200 or result.body is None:
        return None
    raw = result.body if isinstance(result.body, bytes) else fhirjson.dumps(result.body)
    data: dict[str, Any] = json.loads(raw)
    return data


async def own_patient(service: FhirService, user: User) -> str | None:
    """The patient a patient user acts for: their Patient, or their RelatedPerson's."""
    type_, _, id_ = (user.fhir_user or "").partition("/")
    if type_ == "Patient":
        return id_
    if type_ == "RelatedPerson":
        # The account's own link, looked up by the server itself (the user's rights are
        # not known until this answer is).
        related = await _call(service, SYSTEM, f"RelatedPerson/{id_}", [])
        reference = str(((related or {}).get("patient") or {}).get("reference", ""))
        if reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


async def organizations(service: FhirService, user: User) -> list[str]:
    """The organizations a practitioner works for, from their PractitionerRoles."""
    bundle = await _call(
        service,
        await _user_context(service, user),
        "PractitionerRole",
        [("practitioner", user.fhir_user or ""), ("_count", "100")],
    )
    refs = {
        str((entry["resource"].get("organization") or {}).get("reference", ""))
        for entry in (bundle or {}).get("entry", [])
    }
    return sorted(ref for ref in refs if ref.startswith("Organization/"))


async def patients(
    service: FhirService, user: User, text: str, clinician_scope: str, id_: str | None = None
) -> list[Choice] | None:
    """Patients matching `text` (name) or with id `id_` that the user may choose; None
    when a practitioner belongs to no organization (and so has no patients here)."""
    query = [("_count", str(PAGE))]
    if text.strip():
        query.append(("name", text.strip()))
    if id_ is not None:
        query.append(("_id", id_))
    restrict = (
        clinician_scope == "organization"
        and user.role != "admin"
        and (user.fhir_user or "").startswith("Practitioner/")
    )
    if restrict:
        orgs = await organizations(service, user)
        if not orgs:
            return None
        query.append(("organization", ",".join(orgs)))
    bundle = await _call(service, await _user_context(service, user), "Patient", query)
    return [
        patient_choice(entry["resource"])
        for entry in (bundle or {}).get("entry", [])
        if entry.get("search", {}).get("mode", "match") == "match"
    ]


async def patient(service: FhirService, user: User, patient_id: str) -> Choice | None:
    """The patient, when the user may see it."""
    found = await _call(service, await _user_context(service, user), f"Patient/{patient_id}", [])
    return patient_choice(found) if found else None


async def encounters(service: FhirService, user: User, patient_id: str) -> list[Choice]:
    """The patient's encounters, most recent first."""
    bundle = await _call(
        service,
        await _user_context(service, user),
        "Encounter",
        [("patient", patient_id), ("_sort", "-date"), ("_count", str(PAGE))],
    )
    return [
        encounter_choice(entry["resource"])
        for entry in (bundle or {}).get("entry", [])
        if entry.get("search", {}).get("mode", "match") == "match"
    ]


async def encounter(service: FhirService, user: User, encounter_id: str) -> dict[str, Any] | None:
    return await _call(service, await _user_context(service, user), f"Encounter/{encounter_id}", [])


def patient_choice(resource: dict[str, Any]) -> Choice:
    names = resource.get("name") or [{}]
    name = names[0]
    label = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")])
    details = [
        f"born {resource['birthDate']}" if resource.get("birthDate") else "",
        resource.get("gender", ""),
        f"id {resource.get('id', '')}",
    ]
    return Choice(
        str(resource.get("id", "")),
        label.strip() or "(no name)",
        ", ".join(d for d in details if d),
    )


def encounter_choice(resource: dict[str, Any]) -> Choice:
    kinds = resource.get("type") or [{}]
    label = (
        kinds[0].get("text")
        or (kinds[0].get("coding") or [{}])[0].get("display")
        or (resource.get("class") or {}).get("display")
        or (resource.get("class") or {}).get("code")
        or "Encounter"
    )
    period = resource.get("period") or {}
    details = [period.get("start", ""), resource.get("status", ""), f"id {resource.get('id', '')}"]
    return Choice(str(resource.get("id", "")), str(label), ", ".join(d for d in details if d))
