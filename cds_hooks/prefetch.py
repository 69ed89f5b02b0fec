"""Prefetch: https://cds-hooks.hl7.org/2.0/#providing-fhir-resources-to-a-cds-service

A service declares templates (`Patient/{{context.patientId}}`,
`Observation?patient={{context.patientId}}&code=http://loinc.org|2093-3`). The client may
send each key's result: a resource or Bundle; `null` when "the CDS Client has no data to
populate a template prefetch key"; nothing or an OperationOutcome when its fetch failed.
What did not arrive we fetch ourselves, from `fhirServer` with `fhirAuthorization`
(straight through the FHIR service when `fhirServer` is this server, with the rights of
that token); "If the CDS Service is unable to obtain the required data ... it SHOULD
respond with an HTTP 412 Precondition Failed status code."

Tokens: `{{context.<field>}}` for every string field of the hook's context, and
`{{userPractitionerId}}`, `{{userPractitionerRoleId}}`, `{{userPatientId}}`,
`{{userRelatedPersonId}}` from `context.userId` of that type. Every value is
percent-encoded where it is put (never raw), so a context value cannot add a search
parameter or a path segment. A template whose token has no value (a user token when the
user is of another type) resolves to None: there is no such data.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl, quote

import httpx
import orjson

from cds_hooks.hook_request import HookRequest
from cds_hooks.service import JSON
from fhir_server.context import AccessContext
from fhir_server.errors import FhirError, Gone, NotFound
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService

TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9.]*)\s*\}\}")
USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}
FETCH_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
FETCH_DEADLINE = 15.0  # seconds for a whole answer, however slowly it trickles in
MAX_FETCH_BYTES = 16 * 1024 * 1024


class Unavailable(Exception):
    """Prefetch data could not be had (the message says which and why): a 412."""


class Fetcher(Protocol):
    """Where missing prefetch data comes from."""

    async def fetch(self, query: str) -> JSON | None:
        """The result of `query` (relative to the FHIR base); None when a read finds no
        such resource. Raises `Unavailable` otherwise."""
        ...


CONTEXT_TOKENS = frozenset({"context.userId", "context.patientId", "context.encounterId"})


def template_problems(template: str) -> list[str]:
    """Why `template` cannot be a prefetch template here (empty when it can): a FHIR query
    relative to the base, with known tokens only."""
    found = []
    path = template.split("?")[0]
    if not path or path.startswith("/") or ":" in path:
        found.append(f"{template!r} is not a query relative to the FHIR base")
    for name in TOKEN.findall(template):
        if name not in CONTEXT_TOKENS and name not in USER_TOKENS:
            found.append(f"{template!r} has the unknown token {{{{{name}}}}}")
    return found


def tokens(context: JSON) -> dict[str, str]:
    """The values of the prefetch tokens a hook's context gives."""
    values = {f"context.{k}": v for k, v in context.items() if isinstance(v, str)}
    kind, _, user_id = str(context.get("userId", "")).partition("/")
    values.update({name: user_id for name, t in USER_TOKENS.items() if t == kind})
    return values


def render(template: str, values: Mapping[str, str]) -> str | None:
    """`template` with every token replaced by its percent-encoded value; None when a
    token has no value."""
    missing = False

    def put(match: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(match.group(1))
        if value is None:
            missing = True
            return ""
        return quote(value, safe="")

    rendered = TOKEN.sub(put, template)
    return None if missing else rendered


async def resolve(
    templates: Mapping[str, str], request: HookRequest, fetcher: Callable[[], Awaitable[Fetcher]]
) -> dict[str, JSON | None]:
    """Every key of `templates`, from what the client sent or fetched by the `fetcher` made
    when something is missing (it raises `Unavailable` when there is none)."""
    values = tokens(request.context)
    resolved: dict[str, JSON | None] = {}
    missing: dict[str, str] = {}
    for key, template in templates.items():
        sent = request.prefetch.get(key, ...)
        if sent is None or (isinstance(sent, dict) and sent["resourceType"] != "OperationOutcome"):
            resolved[key] = sent
            continue
        query = render(template, values)
        if query is None:
            resolved[key] = None
        else:
            missing[key] = query
    if missing:
        source = await fetcher()
        results = await asyncio.gather(*(source.fetch(q) for q in missing.values()))
        resolved.update(zip(missing, results, strict=True))
    return resolved


@dataclass(frozen=True, slots=True)
class OwnServer:
    """This server's FHIR service, asked with the rights of the caller's token."""

    service: FhirService
    base: str
    context: AccessContext

    async def fetch(self, query: str) -> JSON | None:
        path, _, search = query.partition("?")
        request = Request(
            method="GET",
            path=path.strip("/"),
            query=tuple(parse_qsl(search, keep_blank_values=True)),
            context=self.context,
            base=self.base,
        )
        try:
            response = await self.service.handle(request)
        except (NotFound, Gone):
            if "?" in query:
                raise Unavailable(f"{path} cannot be searched here") from None
            return None
        except FhirError as error:
            raise Unavailable(f"{path}: {error.diagnostics}") from None
        body = response.body
        if response.status != 200 or body is None:
            raise Unavailable(f"{path} answered {response.status}")
        result: JSON = orjson.loads(body) if isinstance(body, bytes) else body
        return result


@dataclass(frozen=True, slots=True)
class RemoteServer:
    """Another FHIR server (the client's `fhirServer`), asked with its `fhirAuthorization`."""

    client: httpx.AsyncClient
    base: str
    access_token: str | None

    async def fetch(self, query: str) -> JSON | None:
        headers = {"Accept": "application/fhir+json"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        path = query.split("?")[0]
        try:
            async with (
                asyncio.timeout(FETCH_DEADLINE),
                self.client.stream(
                    "GET",
                    f"{self.base}/{query.lstrip('/')}",
                    headers=headers,
                    timeout=FETCH_TIMEOUT,
                ) as response,
            ):
                body = await _read_capped(response)
        except (httpx.HTTPError, TimeoutError):
            raise Unavailable(f"{path}: the FHIR server could not be reached in time") from None
        if response.status_code in (404, 410) and "?" not in query:
            return None
        if response.status_code != 200:
            raise Unavailable(f"{path}: the FHIR server answered {response.status_code}")
        try:
            result = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Unavailable(f"{path}: the FHIR server's answer is not JSON") from None
        if not isinstance(result, dict) or not isinstance(result.get("resourceType"), str):
            raise Unavailable(f"{path}: the FHIR server's answer is not a resource")
        return result


async def _read_capped(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_FETCH_BYTES:
            raise Unavailable("the FHIR server's answer is too large")
        chunks.append(chunk)
    return b"".join(chunks)
