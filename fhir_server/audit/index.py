"""The search index values of the AuditEvents this package builds, without FHIRPath.

The general indexer evaluates every AuditEvent search parameter's FHIRPath expression
(about 0.6 ms per event here, more than a read costs); the events written here always
have the shape `events.EventBuilder` gives them, so their values are read straight from
the elements the R4 expressions name, through the same per-type extractors. A unit test
checks that this gives exactly what the general indexer gives for every shape of event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.search.types import date, reference, string, token
from fhir_server.search.values import IndexValue, ReferenceValue


def index_event(event: dict[str, Any]) -> list[IndexValue]:
    """The index values of an AuditEvent as `EventBuilder` builds them."""
    out: list[IndexValue] = []
    out += token.extract("action", "code", event.get("action"))
    out += date.extract("date", "instant", event.get("recorded"))
    out += token.extract("outcome", "code", event.get("outcome"))
    out += token.extract("type", "Coding", event.get("type"))
    for coding in event.get("subtype") or ():
        out += token.extract("subtype", "Coding", coding)
    source = event.get("source") or {}
    out += token.extract("site", "string", source.get("site"))
    out += _references("source", source.get("observer"))
    for agent in event.get("agent") or ():
        out += _agent(agent)
    for entity in event.get("entity") or ():
        out += _entity(entity)
    return list(dict.fromkeys(out))  # each value once, as the general indexer gives them


def _agent(agent: dict[str, Any]) -> Iterator[IndexValue]:
    network = agent.get("network") or {}
    yield from string.extract("address", "string", network.get("address"))
    yield from _references("agent", agent.get("who"), patients=True)
    yield from string.extract("agent-name", "string", agent.get("name"))
    yield from token.extract("altid", "string", agent.get("altId"))
    for role in agent.get("role") or ():
        yield from token.extract("agent-role", "CodeableConcept", role)


def _entity(entity: dict[str, Any]) -> Iterator[IndexValue]:
    yield from _references("entity", entity.get("what"), patients=True)
    name = entity.get("name")
    if name is not None:
        yield from string.extract("entity-name", "string", name)
    yield from _coding("entity-role", entity.get("role"))
    yield from _coding("entity-type", entity.get("type"))


_CODINGS: dict[tuple[str, Any, Any, Any], tuple[IndexValue, ...]] = {}


def _coding(code: str, coding: Any) -> tuple[IndexValue, ...]:
    """A Coding's token values, remembered: the events repeat a handful of codings (an
    entity's role and type) thousands of times."""
    if not isinstance(coding, dict):
        return ()
    key = (code, coding.get("system"), coding.get("code"), coding.get("display"))
    found = _CODINGS.get(key)
    if found is None:
        found = tuple(token.extract(code, "Coding", coding))
        if len(_CODINGS) < 256:
            _CODINGS[key] = found
    return found


def _references(code: str, who: Any, *, patients: bool = False) -> Iterator[IndexValue]:
    if not isinstance(who, dict):
        return
    for value in reference.extract(code, "Reference", who):
        yield value
        if patients and isinstance(value, ReferenceValue) and value.target_type == "Patient":
            yield ReferenceValue("patient", "Patient", value.target_id, value.url, value.version)
