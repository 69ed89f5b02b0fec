"""A hook call's body, checked: https://cds-hooks.hl7.org/2.0/#http-request_1

"hook REQUIRED string; hookInstance REQUIRED string (a UUID); fhirServer CONDITIONAL URL;
fhirAuthorization OPTIONAL object; context REQUIRED object; prefetch OPTIONAL object."
The context a hook carries is fixed by the hook's definition (patient-view, order-select,
order-sign 2.0): `userId` and `patientId` always; order-select also `selections` (ids of
the selected draft orders) and `draftOrders` (a Bundle), order-sign `draftOrders`.

Anything else is a `BadRequest` (400) whose message names the field and what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from cds_hooks.service import JSON, Hook, ServiceDefinition
from fhir_server.errors import BadRequest

HOOKS: tuple[Hook, ...] = ("patient-view", "order-select", "order-sign")
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
MAX_HOOK_INSTANCE = 128


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A hook call as the client sent it (prefetch not yet resolved)."""

    hook: Hook
    hook_instance: str
    context: JSON
    prefetch: dict[str, Any]
    fhir_server: str | None = None
    access_token: str | None = None  # fhirAuthorization.access_token


def parse_hook_request(body: bytes, definition: ServiceDefinition) -> HookRequest:
    """The checked request of a call to the service `definition` describes."""
    data = _json_object(body)
    hook = data.get("hook")
    if not isinstance(hook, str) or not hook:
        raise BadRequest("hook is required (a string)")
    if hook not in HOOKS:
        raise BadRequest(f"unknown hook {hook!r}; this server knows {', '.join(HOOKS)}")
    if hook != definition.hook:
        raise BadRequest(f"the service {definition.id} answers {definition.hook}, not {hook}")
    instance = data.get("hookInstance")
    if not isinstance(instance, str) or not instance or len(instance) > MAX_HOOK_INSTANCE:
        raise BadRequest("hookInstance is required (a UUID string)")
    context = data.get("context")
    if not isinstance(context, dict):
        raise BadRequest("context is required (an object)")
    check_context(hook, context)
    server, token = _fhir_server(data)
    return HookRequest(
        hook=hook,
        hook_instance=instance,
        context=context,
        prefetch=_prefetch(data.get("prefetch")),
        fhir_server=server,
        access_token=token,
    )


def _json_object(body: bytes) -> JSON:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    return data


def check_context(hook: Hook, context: JSON) -> None:
    """The context fields `hook` requires, of the right types."""
    user = _string(context, "userId")
    kind, _, user_id = user.partition("/")
    if kind not in USER_TYPES or not FHIR_ID.fullmatch(user_id):
        raise BadRequest(
            "context.userId must be a reference like Practitioner/123 "
            f"(one of {', '.join(USER_TYPES)})"
        )
    for name in ("patientId", "encounterId"):
        present = name == "patientId" or name in context
        if present and not FHIR_ID.fullmatch(_string(context, name)):
            raise BadRequest(f"context.{name} must be a FHIR id")
    if hook == "order-select":
        selections = context.get("selections")
        if not isinstance(selections, list) or not all(
            isinstance(s, str) and s for s in selections
        ):
            raise BadRequest("context.selections is required (an array of strings)")
    if hook in ("order-select", "order-sign"):
        orders = context.get("draftOrders")
        if not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
            raise BadRequest("context.draftOrders is required (a FHIR Bundle)")


def _string(context: JSON, name: str) -> str:
    value = context.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"context.{name} is required (a string)")
    return value


def _fhir_server(data: JSON) -> tuple[str | None, str | None]:
    server = data.get("fhirServer")
    if server is not None and (
        not isinstance(server, str) or not server.startswith(("https://", "http://"))
    ):
        raise BadRequest("fhirServer must be an http(s) URL")
    server = server.rstrip("/") if server else None
    auth = data.get("fhirAuthorization")
    if auth is None:
        return server, None
    if server is None:
        raise BadRequest("fhirAuthorization needs fhirServer")
    if not isinstance(auth, dict):
        raise BadRequest("fhirAuthorization must be an object")
    token = auth.get("access_token")
    if not isinstance(token, str) or not token:
        raise BadRequest("fhirAuthorization.access_token is required (a string)")
    if str(auth.get("token_type", "")).lower() != "bearer":
        raise BadRequest("fhirAuthorization.token_type must be Bearer")
    return server, token


def _prefetch(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("prefetch must be an object")
    for key, item in value.items():
        if item is not None and (
            not isinstance(item, dict) or not isinstance(item.get("resourceType"), str)
        ):
            raise BadRequest(f"prefetch.{key} must be a FHIR resource or null")
    return value
