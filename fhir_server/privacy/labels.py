"""Security labels (`meta.security`, https://hl7.org/fhir/R4/security-labels.html) and
the clearance a caller needs to receive a resource that carries them.

Every label below is *withheld* from a caller not cleared for it: the resource is left
out of searches, includes and exports as if it did not match, and a read of it is
refused (403). No label is redacted in place (a partial clinical record can mislead more
than a missing one); identifiers are masked by role instead (`masking.py`).

- confidentiality (v3-Confidentiality): R restricted, V very restricted (U, L, M, N
  need no clearance);
- sensitivity (v3-ActCode): HIV, PSY (psychiatry), ETH (substance abuse), SDV (sexual
  assault, abuse or domestic violence), SEX (sexuality and reproductive health), STD
  (sexually transmitted disease), BH (behavioural health), SUD (substance use disorder).

Clearance comes from the caller's role (`AccessContext.role`, the user's role) by the
table `DEFAULT_CLEARANCE`; a backend client (no user, `system/` scopes) is cleared as the
row `backend`; a role the table does not name is cleared for nothing. Internal callers
(the system context) see everything. `FHIR_PRIVACY_CLEARANCE` replaces the table.
"""

from __future__ import annotations

from collections.abc import Mapping

from fhir_server.context import AccessContext
from fhir_server.privacy.logic import Formula, any_of
from fhir_server.search.conditions import TokenCondition

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
LEGACY = {
    CONFIDENTIALITY: "http://hl7.org/fhir/v3/Confidentiality",
    ACT_CODE: "http://hl7.org/fhir/v3/ActCode",
}
LABELS: dict[str, str] = {
    "R": CONFIDENTIALITY,
    "V": CONFIDENTIALITY,
    "HIV": ACT_CODE,
    "PSY": ACT_CODE,
    "ETH": ACT_CODE,
    "SDV": ACT_CODE,
    "SEX": ACT_CODE,
    "STD": ACT_CODE,
    "BH": ACT_CODE,
    "SUD": ACT_CODE,
}
"""The labels that need clearance, by code, with their code system."""

SENSITIVE = frozenset(LABELS) - {"R", "V"}
DEFAULT_CLEARANCE: dict[str, frozenset[str]] = {
    "admin": frozenset(LABELS),
    "clinician": frozenset({"R"}) | SENSITIVE,
    "nurse": frozenset({"R"}),
    "patient": frozenset({"R"}) | SENSITIVE,
    "front-desk": frozenset(),
    "analyst": frozenset(),
    "backend": frozenset({"R"}) | SENSITIVE,
}
"""Role -> the labels it is cleared for. V (very restricted) only for admin."""


def clearance_of(ctx: AccessContext, table: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The label codes `ctx` is cleared for."""
    if ctx.system:
        return frozenset(LABELS)
    if ctx.role is not None:
        return table.get(ctx.role, frozenset())
    if ctx.fhir_user is None and any(s.startswith("system/") for s in ctx.scopes):
        return table.get("backend", frozenset())
    return frozenset()


def uncleared(cleared: frozenset[str]) -> Formula:
    """The condition on a resource's labels that withholds it from a caller `cleared` for
    these codes (False: nothing is withheld)."""
    return any_of(
        TokenCondition("_security", system, code)
        for code in sorted(set(LABELS) - cleared)
        for system in (LABELS[code], LEGACY[LABELS[code]])
    )
