"""What a CDS service is to the protocol layer, and the cards it answers with.

The protocol layer (discovery, authentication of CDS clients, request checks, prefetch
resolution, feedback) knows services only through `CdsService`: a `ServiceDefinition` for
discovery and `evaluate`, which turns a checked `HookCall` into a `CdsResponse`. Services are
framework-free and never fetch data themselves: every prefetch template they declare is
resolved before `evaluate` runs.

Prefetch values a service sees (`HookCall.prefetch[key]`):
- a resource (a template that reads one resource, e.g. `Patient/{{context.patientId}}`);
- a searchset `Bundle` (a template that searches; possibly with no entries);
- `None`: the CDS client or our own fetch found that no such data exists.
A key is never absent and never an OperationOutcome: the protocol layer fetches what the
client did not send and answers 412 when data cannot be had, before `evaluate` is called.

Cards follow CDS Hooks 2.0.1: `to_json` leaves out empty values, and construction refuses
what the spec forbids (a summary of 140 characters or more, an unknown indicator, a card with
suggestions but no `selectionBehavior`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

JSON = dict[str, Any]
Hook = Literal["patient-view", "order-select", "order-sign"]
Indicator = Literal["info", "warning", "critical"]

_INDICATORS = ("info", "warning", "critical")


def _compact(value: Any) -> Any:
    """`value` without None, empty strings, lists and objects, at any depth."""
    if isinstance(value, dict):
        kept = {k: _compact(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        items = [_compact(v) for v in value]
        return [v for v in items if v not in (None, "", [], {})]
    return value


@dataclass(frozen=True, slots=True)
class ServiceDefinition:
    """One entry of `GET /cds-services`."""

    id: str
    hook: Hook
    title: str
    description: str
    prefetch: dict[str, str] = field(default_factory=dict)  # key -> FHIR query template
    usage_requirements: str | None = None

    def discovery(self) -> JSON:
        result: JSON = _compact(
            {
                "hook": self.hook,
                "title": self.title,
                "description": self.description,
                "id": self.id,
                "prefetch": dict(self.prefetch),
                "usageRequirements": self.usage_requirements,
            }
        )
        return result


@dataclass(frozen=True, slots=True)
class HookCall:
    """A checked hook request, its prefetch resolved (see the module's docstring)."""

    hook: Hook
    hook_instance: str
    context: JSON
    prefetch: dict[str, JSON | None]
    fhir_server: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    label: str
    url: str
    type: Literal["absolute", "smart"] = "absolute"
    app_context: str | None = None

    def to_json(self) -> JSON:
        return {
            "label": self.label,
            "url": self.url,
            "type": self.type,
            "appContext": self.app_context,
        }


@dataclass(frozen=True, slots=True)
class Action:
    """A suggestion's action: `create` / `update` carry a resource, `delete` a resourceId."""

    type: Literal["create", "update", "delete"]
    description: str
    resource: JSON | None = None
    resource_id: str | None = None

    def to_json(self) -> JSON:
        return {
            "type": self.type,
            "description": self.description,
            "resource": self.resource,
            "resourceId": self.resource_id,
        }


@dataclass(frozen=True, slots=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...] = ()
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    is_recommended: bool | None = None

    def to_json(self) -> JSON:
        return {
            "label": self.label,
            "uuid": self.uuid,
            "isRecommended": self.is_recommended,
            "actions": [a.to_json() for a in self.actions],
        }


@dataclass(frozen=True, slots=True)
class Coding:
    code: str
    system: str
    display: str | None = None

    def to_json(self) -> JSON:
        return {"code": self.code, "system": self.system, "display": self.display}


@dataclass(frozen=True, slots=True)
class Card:
    summary: str
    indicator: Indicator
    source_label: str
    detail: str | None = None
    source_url: str | None = None
    source_topic: Coding | None = None
    suggestions: tuple[Suggestion, ...] = ()
    selection_behavior: Literal["at-most-one", "any"] | None = None
    override_reasons: tuple[Coding, ...] = ()
    links: tuple[Link, ...] = ()
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if not self.summary or len(self.summary) >= 140:
            raise ValueError(f"a card summary must have 1-139 characters: {self.summary!r}")
        if self.indicator not in _INDICATORS:
            raise ValueError(f"unknown card indicator {self.indicator!r}")
        if not self.source_label:
            raise ValueError("a card needs source.label")
        if self.suggestions and self.selection_behavior is None:
            raise ValueError("a card with suggestions needs selectionBehavior")
        if any(not reason.display for reason in self.override_reasons):
            raise ValueError("every override reason needs a display")

    def to_json(self) -> JSON:
        source = {
            "label": self.source_label,
            "url": self.source_url,
            "topic": self.source_topic.to_json() if self.source_topic else None,
        }
        result: JSON = _compact(
            {
                "uuid": self.uuid,
                "summary": self.summary,
                "detail": self.detail,
                "indicator": self.indicator,
                "source": source,
                "suggestions": [s.to_json() for s in self.suggestions],
                "selectionBehavior": self.selection_behavior,
                "overrideReasons": [r.to_json() for r in self.override_reasons],
                "links": [link.to_json() for link in self.links],
            }
        )
        return result


@dataclass(frozen=True, slots=True)
class CdsResponse:
    cards: tuple[Card, ...] = ()
    system_actions: tuple[Action, ...] = ()

    def to_json(self) -> JSON:
        result: JSON = {"cards": [card.to_json() for card in self.cards]}  # cards: required
        actions = [_compact(a.to_json()) for a in self.system_actions]
        if actions:
            result["systemActions"] = actions
        return result


class CdsService(Protocol):
    """A CDS service: what discovery lists and what answers a hook call."""

    @property
    def definition(self) -> ServiceDefinition: ...

    def evaluate(self, call: HookCall) -> CdsResponse: ...
