"""Who is asking: the access context every interaction carries, and the policy seam.

Every read and write in `fhir_server.interactions` passes through an `AccessPolicy`.
The foundation ships `AllowAll`; SMART scopes plug in here later without touching
the interactions themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fhir_server.errors import Forbidden
from fhir_server.search.conditions import SearchQuery, map_inner
from fhir_server.storage.base import StoredResource

Action = Literal["read", "search", "create", "update", "delete", "history", "operation", "admin"]
"""`operation`: an operation that reads data of its type (`$everything`); `admin`: one that
administers the server (`$reindex`, `$convert-hl7v2`, the HL7 v2 endpoint)."""


@dataclass(frozen=True, slots=True)
class AccessContext:
    """The caller: a subject, its granted scopes and, for patient-level access, a compartment.

    From a SMART access token: `client_id`, `fhir_user` ("Practitioner/123"), `encounter`,
    `role` and `jti` as its claims say. `user_patients` is the set of patients `user/`
    scopes reach when the deployment limits a practitioner to the patients of their
    organizations, `user_organizations` those organizations (None: not limited). `system`
    is for internal callers only, never a token.
    """

    subject: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    patient: str | None = None
    system: bool = False
    client_id: str | None = None
    fhir_user: str | None = None
    encounter: str | None = None
    role: str | None = None
    jti: str | None = None
    user_patients: frozenset[str] | None = None
    user_organizations: frozenset[str] | None = None
    purposes: frozenset[str] = frozenset()
    """Purposes of use (v3-PurposeOfUse codes, e.g. HRESCH research) the caller acts for:
    the token's `purpose_of_use` claim; consents may deny access for a purpose."""


SYSTEM = AccessContext(subject="system", scopes=frozenset({"system/*.*"}), system=True)
"""Internal callers (CLI loader, HL7 v2 listener, CDS prefetch) act as this explicit context."""

ANONYMOUS = AccessContext(subject="anonymous", scopes=frozenset({"user/*.*"}))
"""An unauthenticated HTTP caller while no authorization server is configured."""


class AccessPolicy(Protocol):
    """The one place where "may this caller do this?" is decided.

    `check` guards every interaction before it touches storage; `check_resource` sees the
    resource a write is about to store; `visible` filters every resource a read returns
    (read, vread, history, search matches and anything a search pulls in); `restrict`
    narrows a search to what the caller may see (e.g. a patient compartment).
    """

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None: ...

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None: ...

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool: ...

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery: ...


def restrict_search(policy: AccessPolicy, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
    """`policy.restrict` on the query and on every inner query of its chains and `_has`:
    a chained criterion must not match through a resource the caller may not see."""
    return policy.restrict(ctx, map_inner(query, lambda inner: policy.restrict(ctx, inner)))


class Disclosure(Protocol):
    """What a caller receives of a resource it may see, decided after the access policy.

    `present` gives the version as this caller may receive it (e.g. identifiers masked for
    their role); every read path (read, vread, history, search matches and includes,
    `$everything`, exports, what a write returns) passes what it returns through it.
    `withheld` splits a search restricted by `restrict_search` by the policy's privacy
    rules (consents, security labels): (the query without them, the query for what they
    take out), or None when they take nothing out. A search counts the two (cheap index
    counts, where the restricted query's own count tests every row), gives their
    difference as its total, and a Bundle that withheld something says so."""

    def present(self, ctx: AccessContext, rec: StoredResource) -> StoredResource: ...

    def withheld(
        self, ctx: AccessContext, query: SearchQuery
    ) -> tuple[SearchQuery, SearchQuery] | None: ...


class FullDisclosure:
    """Every visible resource as stored; nothing withheld beyond the scopes."""

    def present(self, ctx: AccessContext, rec: StoredResource) -> StoredResource:
        return rec

    def withheld(
        self, ctx: AccessContext, query: SearchQuery
    ) -> tuple[SearchQuery, SearchQuery] | None:
        return None


class AllowAll:
    """The unrestricted policy of the foundation: every context may do everything."""

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        return None

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None:
        return None

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return True

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        return query


class DenyAll(AllowAll):
    """Refuses every non-system caller; tests use it to prove the seam is on every path."""

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        if not ctx.system:
            raise Forbidden(f"{action} on {resource_type or 'the system'} is not permitted")

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        return ctx.system
