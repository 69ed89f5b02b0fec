"""Who may see the audit trail, and that nobody changes it through the API.

`AuditGuard` wraps the server's access policy:
- AuditEvents are written by the server only: creating, updating, patching or deleting
  one through the API (also as a batch or transaction entry) is refused with 403, for
  every caller, administrators included;
- reading or searching them needs an audit role: a user whose role is `privacy-officer`
  (signed in; the app granted `user/AuditEvent.rs`), or a backend client granted a scope
  that names AuditEvent at system level (`system/AuditEvent.rs` or `system/AuditEvent.read`;
  `system/*.rs` is not enough). Everyone else sees no AuditEvent anywhere (searches,
  `_include`, `$everything`, history).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhir_server.context import AccessContext, AccessPolicy, Action
from fhir_server.errors import Forbidden
from fhir_server.search.conditions import SearchQuery
from fhir_server.storage.base import StoredResource

AUDIT_TYPE = "AuditEvent"
AUDIT_ROLES = frozenset({"privacy-officer"})
_WRITES = frozenset({"create", "update", "delete"})
_READ_LETTERS = frozenset("rs")


def may_audit(ctx: AccessContext) -> bool:
    """Whether `ctx` holds an audit role (see the module docstring)."""
    if ctx.system:
        return True
    if ctx.role in AUDIT_ROLES:
        return True
    return any(_system_audit_scope(scope) for scope in ctx.scopes)


def _system_audit_scope(scope: str) -> bool:
    level, _, rest = scope.partition("/")
    type, _, letters = rest.partition(".")
    if level != "system" or type != AUDIT_TYPE:
        return False
    letters = letters.split("?")[0]
    return letters in ("read", "*") or bool(_READ_LETTERS & set(letters))


class AuditGuard:
    """An `AccessPolicy` that protects AuditEvents, then asks `inner`.

    `types` are the server's resource types: a search of every type by a caller without
    an audit role becomes a search of all but AuditEvent. With `open_reads` (authorization
    off: every caller may read everything) anyone reads them; nobody writes them."""

    def __init__(
        self, inner: AccessPolicy, types: frozenset[str], *, open_reads: bool = False
    ) -> None:
        self.inner = inner
        self.others = tuple(sorted(types - {AUDIT_TYPE}))
        self.open_reads = open_reads

    def may_read(self, ctx: AccessContext) -> bool:
        return self.open_reads or may_audit(ctx)

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        if resource_type == AUDIT_TYPE and not ctx.system:
            _refuse_writes(action)
            if not self.may_read(ctx):
                raise Forbidden(
                    "Reading AuditEvents needs an audit role (the privacy-officer user role, "
                    "or a system/AuditEvent.rs scope)"
                )
        self.inner.check(ctx, action, resource_type)

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None:
        if resource_type == AUDIT_TYPE and not ctx.system:
            _refuse_writes(action)
        self.inner.check_resource(ctx, action, resource_type, resource)

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        if rec.type == AUDIT_TYPE and not self.may_read(ctx):
            return False
        return self.inner.visible(ctx, rec)

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        query = self.inner.restrict(ctx, query)
        if not query.types and not self.may_read(ctx):
            return replace(query, types=self.others)
        return query


def _refuse_writes(action: Action) -> None:
    if action in _WRITES:
        raise Forbidden(
            "AuditEvents are written by the server only: they cannot be created, changed "
            "or deleted through the API"
        )
