"""What one interaction touched: the seam an audit trail reads, without this layer knowing it.

A caller that wants to know (the HTTP adapter, for the audit trail) opens an `Observed`
record with `begin()` before it runs a request; the service then `note`s every resource
version the interaction returned or wrote (reads, search matches and includes, history,
writes) and the adapter sets who asked. Nobody observing: `note` is one context-variable
look-up, so the request path pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass, field

from fhir_server.context import AccessContext
from fhir_server.storage.base import StoredResource


@dataclass(slots=True)
class Observed:
    """One interaction: who asked (`context`, None when refused before it was known) and
    the resource versions it returned or wrote, in order."""

    context: AccessContext | None = None
    resources: list[StoredResource] = field(default_factory=list)
    user: str | None = None  # a sign-in's user name (before any token exists)
    client: str | None = None  # the client a token request named


_current: ContextVar[Observed | None] = ContextVar("observed", default=None)


def begin() -> Observed:
    """Start observing the interaction that runs in this context (and tasks it starts)."""
    observed = Observed()
    _current.set(observed)
    return observed


def current() -> Observed | None:
    """The interaction being observed here, if any."""
    return _current.get()


def note(resources: Iterable[StoredResource]) -> None:
    """Record resource versions the current interaction returned or wrote."""
    observed = _current.get()
    if observed is not None:
        observed.resources.extend(resources)
