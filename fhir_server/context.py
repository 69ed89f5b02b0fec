"""Who is asking: the access context every interaction carries, and the policy seam.

Every read and write in `fhir_server.interactions` passes through an `AccessPolicy`.
The foundation ships `AllowAll`; SMART scopes plug in here later without touching
the interactions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from fhir_server.errors import Forbidden

Action = Literal["read", "search", "create", "update", "delete", "history", "operation"]


@dataclass(frozen=True, slots=True)
class AccessContext:
    """The caller: a subject, its granted scopes and, for patient-level access, a compartment."""

    subject: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    patient: str | None = None
    system: bool = False


SYSTEM = AccessContext(subject="system", scopes=frozenset({"system/*.*"}), system=True)
"""Internal callers (CLI loader, HL7 v2 listener, CDS prefetch) act as this explicit context."""

ANONYMOUS = AccessContext(subject="anonymous", scopes=frozenset({"user/*.*"}))
"""An unauthenticated HTTP caller while no authorization server is configured."""


class AccessPolicy(Protocol):
    def check(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict | None = None
    ) -> None:
        """Raise `Forbidden` if `ctx` may not perform `action` on this type (or resource)."""

    def visible(self, ctx: AccessContext, resource_type: str, resource: dict) -> bool:
        """Whether a resource pulled into a result (search, include, history) may be shown."""


class AllowAll:
    """The unrestricted policy of the foundation: every context may do everything."""

    def check(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict | None = None
    ) -> None:
        return None

    def visible(self, ctx: AccessContext, resource_type: str, resource: dict) -> bool:
        return True


class DenyAll:
    """A policy that refuses everything; used to prove the seam is on every path."""

    def check(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict | None = None
    ) -> None:
        if not ctx.system:
            raise Forbidden(f"{action} on {resource_type} is not permitted for {ctx.subject}")

    def visible(self, ctx: AccessContext, resource_type: str, resource: dict) -> bool:
        return ctx.system
