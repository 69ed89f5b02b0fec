"""Which patients a practitioner's `user/` scopes reach when the deployment limits
clinicians to the patients of their organizations (`FHIR_AUTH_CLINICIAN_SCOPE=organization`,
the default).

A practitioner works for the organizations their PractitionerRoles name
(`PractitionerRole.organization`); the patients of an organization are those it manages
(`Patient.managingOrganization`). `OrganizationReach.apply` adds both to a verified
token's `AccessContext` (`user_organizations`, `user_patients`); `SmartPolicy` then
restricts `user/` scopes to them, as the pickers do when the user chooses a patient. An
admin, a backend system and a user who is not a practitioner are left as they are.

The lookups run as the server itself, once per practitioner per `ttl` seconds (not on
every request); a write of a Patient or PractitionerRole in this process forgets them
at once, and another process sees it within `ttl`.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_server.context import SYSTEM, AccessContext
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.model import fhirjson
from fhir_server.storage.base import StoredResource

TTL = 10.0  # seconds a practitioner's patients are reused
PAGE = 1000
_CACHED = 1024  # practitioners remembered at once
_PRACTITIONER_TYPES = ("Practitioner", "PractitionerRole")


@dataclass(frozen=True, slots=True)
class Reach:
    """A practitioner's organizations (`Organization/id` references) and their patients."""

    organizations: frozenset[str]
    patients: frozenset[str]


class OrganizationReach:
    """Fills in the organizations and patients a practitioner's `user/` scopes reach."""

    def __init__(self, service: FhirService, ttl: float = TTL) -> None:
        self.service = service
        self.ttl = ttl
        self._cache: OrderedDict[str, tuple[float, Reach]] = OrderedDict()
        service.on_write(("Patient", "PractitionerRole"), self._written)

    async def apply(self, ctx: AccessContext) -> AccessContext:
        """`ctx` restricted to its practitioner's organizations (unchanged for others)."""
        kind, _, _ = (ctx.fhir_user or "").partition("/")
        if ctx.system or ctx.role == "admin" or kind not in _PRACTITIONER_TYPES:
            return ctx
        assert ctx.fhir_user is not None
        reach = await self.reach(ctx.fhir_user)
        return replace(ctx, user_organizations=reach.organizations, user_patients=reach.patients)

    async def reach(self, fhir_user: str) -> Reach:
        """The organizations and patients of `fhir_user` (Practitioner/x, PractitionerRole/x)."""
        cached = self._cache.get(fhir_user)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        orgs = await self._organizations(fhir_user)
        patients = await self._patients(orgs) if orgs else frozenset()
        found = Reach(orgs, patients)
        self._cache[fhir_user] = (time.monotonic(), found)
        self._cache.move_to_end(fhir_user)
        if len(self._cache) > _CACHED:
            self._cache.popitem(last=False)
        return found

    def _written(self, written: Sequence[StoredResource]) -> None:
        self._cache.clear()  # a patient or a role changed: look again on the next request

    async def _organizations(self, fhir_user: str) -> frozenset[str]:
        kind, _, id_ = fhir_user.partition("/")
        query = [("practitioner", fhir_user)] if kind == "Practitioner" else [("_id", id_)]
        roles = await self._all("PractitionerRole", query)
        refs = (str((role.get("organization") or {}).get("reference", "")) for role in roles)
        return frozenset(ref for ref in refs if ref.startswith("Organization/"))

    async def _patients(self, orgs: frozenset[str]) -> frozenset[str]:
        found = await self._all(
            "Patient", [("organization", ",".join(sorted(orgs))), ("_elements", "id")]
        )
        return frozenset(str(p["id"]) for p in found if p.get("id"))

    async def _all(self, type_: str, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
        """Every match of a search, page after page, as the server itself."""
        out: list[dict[str, Any]] = []
        params: list[tuple[str, str]] | None = [*query, ("_count", str(PAGE))]
        while params is not None:
            result = await self.service.handle(
                Request(method="GET", path=type_, query=tuple(params), context=SYSTEM)
            )
            bundle = _json(result.body)
            out.extend(
                entry["resource"]
                for entry in bundle.get("entry", [])
                if entry.get("search", {}).get("mode", "match") == "match"
            )
            params = _next(bundle)
        return out


def _json(body: Any) -> dict[str, Any]:
    """A search answer as plain JSON (its entries may hold stored bytes)."""
    raw = body if isinstance(body, bytes) else fhirjson.dumps(body or {})
    data: dict[str, Any] = fhirjson.loads(raw)
    return data


def _next(bundle: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The query of the bundle's `next` link, or None on the last page."""
    for link in bundle.get("link", []):
        if link.get("relation") == "next":
            return parse_qsl(urlsplit(str(link["url"])).query, keep_blank_values=True)
    return None
