"""Roles: which SMART scopes a user of each role may grant to an app.

The consent screen offers a requested scope only when the user's role allows it; the rest
are listed as not available and never granted. A role is a list of rules
`(levels, resource types, permission letters)`; a scope (parsed by
`fhir_server.auth.scopes`, as the resource server reads it) is grantable when one rule
covers its level (`patient`, `user`), its resource type (a rule for "*" covers every type;
a scope for "*" needs such a rule) and all its permission letters (v2 `cruds`; v1 `read`
is `rs`, `write` is `cud`, `*` is all five). A granular scope (`?category=...`) narrows
its base scope, so it is grantable when its base is.

- clinician: every resource, read and write, as the patient or as the user;
- nurse: reads everything; writes the records of care at the bedside;
- front desk: the administrative resources only (no clinical data);
- patient: reads, as `patient/` scopes only, about their own Patient (or, for a
  RelatedPerson, the patient they are related to);
- admin: every scope, `system/` included;
- privacy officer: reads the audit trail (`user/AuditEvent.rs`) and the patients it names;
  the role is what lets the AuditEvents be read at all (see `fhir_server.audit.guard`).

Context and identity scopes (`openid`, `fhirUser`, `profile`, `launch`, `launch/patient`,
`launch/encounter`, `offline_access`, `online_access`) are open to every role.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.auth.scopes import LETTERS as ALL_LETTERS
from fhir_server.auth.scopes import Scope, parse_scope

IDENTITY_SCOPES = frozenset(
    {
        "openid",
        "fhirUser",
        "profile",
        "launch",
        "launch/patient",
        "launch/encounter",
        "offline_access",
        "online_access",
    }
)
"""Scopes that ask for context or identity rather than data; always offered."""

FRONT_DESK_TYPES = frozenset(
    {
        "Patient",
        "RelatedPerson",
        "Person",
        "Appointment",
        "AppointmentResponse",
        "Schedule",
        "Slot",
        "Encounter",
        "EpisodeOfCare",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "Account",
        "Organization",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "HealthcareService",
        "Endpoint",
    }
)
NURSE_WRITES = frozenset(
    {
        "Observation",
        "MedicationAdministration",
        "Procedure",
        "Encounter",
        "Task",
        "Communication",
        "CarePlan",
        "Flag",
        "DocumentReference",
        "AllergyIntolerance",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    levels: frozenset[str]
    types: frozenset[str] | None  # None: every resource type
    letters: str


_PU = frozenset({"patient", "user"})
ROLES: dict[str, tuple[Rule, ...]] = {
    "clinician": (Rule(_PU, None, ALL_LETTERS),),
    "nurse": (Rule(_PU, None, "rs"), Rule(_PU, NURSE_WRITES, ALL_LETTERS)),
    "front-desk": (Rule(_PU, FRONT_DESK_TYPES, ALL_LETTERS),),
    "patient": (Rule(frozenset({"patient"}), None, "rs"),),
    "admin": (Rule(frozenset({"patient", "user", "system"}), None, ALL_LETTERS),),
    "privacy-officer": (Rule(frozenset({"user"}), frozenset({"AuditEvent", "Patient"}), "rs"),),
}
"""Role name -> what it may grant. Names are what `auth user add --role` takes."""


def may_grant(role: str, scope: str) -> bool:
    """Whether a user of `role` may grant `scope` to an app."""
    if scope in IDENTITY_SCOPES:
        return True
    parsed = parse_scope(scope)
    if parsed is None:
        return False
    return any(_covers(rule, parsed) for rule in ROLES.get(role, ()))


def _covers(rule: Rule, scope: Scope) -> bool:
    if scope.level not in rule.levels:
        return False
    if rule.types is not None and scope.type not in rule.types:
        return False
    return scope.letters <= frozenset(rule.letters)


def role_scopes(role: str) -> frozenset[str]:
    """The v2 scopes a role's rules amount to: the user's rights when the pickers list
    patients and encounters through the FHIR service."""
    scopes: set[str] = set()
    for rule in ROLES.get(role, ()):
        for level in rule.levels:
            for type_ in sorted(rule.types) if rule.types is not None else ["*"]:
                scopes.add(f"{level}/{type_}.{rule.letters}")
    return frozenset(scopes)
