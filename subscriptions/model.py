"""A Subscription as matching and delivery see it, and the checks a write must pass.

R4 (https://hl7.org/fhir/R4/subscription.html): `criteria` is a search `Type?params`;
`channel.payload` absent sends an empty POST to the endpoint, `application/fhir+json` PUTs
the resource to `[endpoint]/[type]/[id]`. Topic-based (Backport IG, R4): `criteria` is a
SubscriptionTopic canonical, filters in `_criteria`'s `backport-filter-criteria`
extensions, content (`empty`, `id-only`, `full-resource`) in `_payload`'s
`backport-payload-content`, and the channel's `backport-heartbeat-period`,
`backport-timeout` and `backport-max-count` extensions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from fhir_server.context import AccessContext
from fhir_server.errors import BadRequest, Unprocessable
from fhir_server.search.conditions import SearchQuery
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchRegistry

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER = BACKPORT + "backport-filter-criteria"
CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
CREATOR = "urn:fhir-server:subscription-creator"  # who wrote it: its access context
"""Stamped by the server on every create and update (a client's copy is replaced)."""
FHIR_JSON = "application/fhir+json"
DELIVERED = ("active", "error")  # statuses whose matches are queued
Content = Literal["empty", "id-only", "full-resource"]


@dataclass(frozen=True, slots=True)
class Filter:
    """One search a write must match: its type and its parsed query."""

    type: str
    query: SearchQuery
    text: str


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    version: int
    status: str
    topic: str | None  # None: an R4 criteria subscription
    filters: tuple[Filter, ...]
    channel: str  # rest-hook | websocket
    endpoint: str | None
    headers: tuple[tuple[str, str], ...]
    content: Content
    heartbeat: int | None  # seconds
    timeout: float | None
    max_count: int
    creator: AccessContext | None  # who wrote it last: notifications carry what it may read

    @property
    def queue(self) -> str:
        return queue_of(self.id)


def queue_of(id: str) -> str:
    return f"subscription/{id}"


def extension(element: Any, url: str) -> Any:
    """The value[x] of the first extension `url` on `element` (None when absent)."""
    if not isinstance(element, dict):
        return None
    for ext in element.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == url:
            return next((v for k, v in ext.items() if k.startswith("value")), None)
    return None


def extensions(element: Any, url: str) -> list[Any]:
    if not isinstance(element, dict):
        return []
    return [
        next((v for k, v in ext.items() if k.startswith("value")), None)
        for ext in element.get("extension") or ()
        if isinstance(ext, dict) and ext.get("url") == url
    ]


def parse_filter(registry: SearchRegistry, text: str, codes: Any = None) -> Filter:
    """`Type?params` parsed strictly by the server's search parser (400 on unknown ones)."""
    type, _, query = text.strip().partition("?")
    if type not in registry.resource_types:
        raise BadRequest(
            f"Subscription criteria '{text}' must be a search 'Type?parameters' of a known "
            "resource type",
            expression=("Subscription.criteria",),
        )
    params = parse_qsl(query, keep_blank_values=True)
    for name, _ in params:
        if name.startswith("_") and name not in ("_id", "_lastUpdated", "_tag", "_profile"):
            raise BadRequest(
                f"Subscription criteria cannot use '{name}'", expression=("Subscription.criteria",)
            )
    try:
        parsed = parse_search(registry, (type,), params, strict=True, codes=codes)
    except BadRequest as error:
        raise BadRequest(
            f"Subscription criteria '{text}': {error.issues[0].diagnostics}",
            expression=("Subscription.criteria",),
        ) from error
    return Filter(type, parsed.query, text)


def read(
    resource: dict[str, Any],
    registry: SearchRegistry,
    topics: dict[str, tuple[str, ...]] | None,
    codes: Any = None,
) -> Subscription:
    """The stored or submitted `resource` as a `Subscription` (400 when it cannot work).
    `topics` None: any canonical is taken as a topic (reading a stored one elsewhere)."""
    criteria = resource.get("criteria")
    if not isinstance(criteria, str) or not criteria.strip():
        raise BadRequest("Subscription.criteria is required", expression=("Subscription.criteria",))
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind not in ("rest-hook", "websocket"):
        raise Unprocessable(
            f"Subscription.channel.type '{kind}' is not supported: use rest-hook or websocket",
            expression=("Subscription.channel.type",),
        )
    topic: str | None = None
    if "?" in criteria or criteria in registry.resource_types:
        filters: tuple[Filter, ...] = (parse_filter(registry, criteria, codes),)
        content: Content = "full-resource" if channel.get("payload") else "empty"
    else:
        topic = criteria
        types = topics.get(topic) if topics is not None else tuple(registry.resource_types)
        if types is None:
            raise BadRequest(
                f"Subscription.criteria '{criteria}' is neither a search nor a known "
                "SubscriptionTopic canonical",
                expression=("Subscription.criteria",),
            )
        texts = [t for t in extensions(resource.get("_criteria"), FILTER) if isinstance(t, str)]
        parsed = [parse_filter(registry, t, codes) for t in texts]
        filters = tuple(parsed) or tuple(Filter(t, SearchQuery((t,)), t) for t in types)
        for f in filters:
            if f.type not in types:
                raise BadRequest(
                    f"Filter '{f.text}' is on {f.type}, which topic {topic} does not cover",
                    expression=("Subscription.criteria",),
                )
        found = extension(channel.get("_payload"), CONTENT)
        content = found if found in ("empty", "id-only", "full-resource") else "id-only"
    payload = channel.get("payload")
    if payload not in (None, FHIR_JSON, "application/json"):
        raise Unprocessable(
            f"Subscription.channel.payload '{payload}' is not supported: use {FHIR_JSON}",
            expression=("Subscription.channel.payload",),
        )
    max_count = extension(channel, MAX_COUNT)
    return Subscription(
        id=str(resource.get("id") or ""),
        version=int((resource.get("meta") or {}).get("versionId") or 0),
        status=str(resource.get("status") or "requested"),
        topic=topic,
        filters=filters,
        channel=kind,
        endpoint=channel.get("endpoint"),
        headers=_headers(channel.get("header") or []),
        content=content,
        heartbeat=_positive(extension(channel, HEARTBEAT)),
        timeout=_positive(extension(channel, TIMEOUT)),
        max_count=max(1, min(_positive(max_count) or 20, 100)),
        creator=creator_of(resource),
    )


_WORDS = ("scopes", "user-patients", "user-organizations")  # space-separated lists


def creator_stamp(ctx: AccessContext) -> dict[str, Any]:
    """The `CREATOR` extension recording `ctx` (what `creator_of` reads back)."""
    parts = [{"url": "subject", "valueString": ctx.subject}]
    for name, value in (
        ("scopes", " ".join(sorted(ctx.scopes))),
        ("patient", ctx.patient),
        ("fhir-user", ctx.fhir_user),
        ("role", ctx.role),
        ("user-patients", _joined(ctx.user_patients)),
        ("user-organizations", _joined(ctx.user_organizations)),
    ):
        if value is not None:
            parts.append({"url": name, "valueString": value})
    return {"url": CREATOR, "extension": parts}


def _joined(values: frozenset[str] | None) -> str | None:
    return None if values is None else " ".join(sorted(values))


def creator_of(resource: dict[str, Any]) -> AccessContext | None:
    """The context recorded by `creator_stamp` (None: written by the server itself)."""
    for ext in resource.get("extension") or ():
        if isinstance(ext, dict) and ext.get("url") == CREATOR:
            got = {p.get("url"): p.get("valueString") for p in ext.get("extension") or ()}
            lists = {
                k: frozenset(str(got[k]).split()) if got.get(k) is not None else None
                for k in _WORDS
            }
            return AccessContext(
                subject=str(got.get("subject") or "subscription creator"),
                scopes=lists["scopes"] or frozenset(),
                patient=got.get("patient"),
                fhir_user=got.get("fhir-user"),
                role=got.get("role"),
                user_patients=lists["user-patients"],
                user_organizations=lists["user-organizations"],
            )
    return None


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an HTTP field name (RFC 9110 5.1)
MAX_HEADERS = 20


def _headers(lines: list[Any]) -> tuple[tuple[str, str], ...]:
    if len(lines) > MAX_HEADERS:
        raise BadRequest(
            f"At most {MAX_HEADERS} Subscription.channel.header lines",
            expression=("Subscription.channel.header",),
        )
    out = []
    for line in lines:
        name, sep, value = str(line).partition(":")
        name = name.strip()
        bad_value = any(c in value for c in "\r\n\x00")
        if not sep or not _TOKEN.match(name) or bad_value:
            raise BadRequest(
                "Each Subscription.channel.header must be 'Name: value' on one line",
                expression=("Subscription.channel.header",),
            )
        out.append((name, value.strip()))
    return tuple(out)


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def check_endpoint(sub: Subscription, allowed_hosts: frozenset[str]) -> None:
    """rest-hook endpoints must be https, or http to a host on the allow-list (422)."""
    if sub.channel != "rest-hook":
        return
    endpoint = sub.endpoint
    if not isinstance(endpoint, str) or not endpoint:
        raise Unprocessable(
            "A rest-hook Subscription needs channel.endpoint",
            expression=("Subscription.channel.endpoint",),
        )
    try:
        url = urlsplit(endpoint)
        host = (url.hostname or "").lower()
        _ = url.port
    except ValueError:
        host = ""
    if url.scheme not in ("http", "https") or not host or url.username or url.password:
        raise Unprocessable(
            f"Subscription endpoint '{_shown(endpoint)}' is not an absolute http(s) URL "
            "without credentials",
            expression=("Subscription.channel.endpoint",),
        )
    if url.scheme == "http" and host not in allowed_hosts and "*" not in allowed_hosts:
        raise Unprocessable(
            f"Subscription endpoint host '{host}' is not allowed over http: use https, or add "
            "the host to FHIR_SUBSCRIPTION_ALLOWED_HOSTS",
            expression=("Subscription.channel.endpoint",),
        )


def _shown(endpoint: str) -> str:
    """The endpoint without its query (it may hold a secret)."""
    return endpoint.split("?", 1)[0][:200]
