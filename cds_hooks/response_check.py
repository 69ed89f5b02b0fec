"""The last check of a service's answer before it is sent: https://cds-hooks.hl7.org/2.0/#cds-service-response

"summary REQUIRED string: One-sentence, <140-character summary message"; "indicator
REQUIRED string: info, warning, critical"; "source REQUIRED object" with a `label`;
"selectionBehavior CONDITIONAL ... MUST be provided if a card contains suggestions";
"overrideReasons ... Coding" with a display; a link's `type` "absolute" or "smart", and
"appContext ... SHALL only be valid for SMART app links"; an action's `type` "create",
"update" or "delete", with `resource` (create, update) or `resourceId` (delete). And the
JSON rule of the spec: "optional fields ... SHOULD be omitted" rather than null or empty.

`problems` lists what is wrong (empty when nothing is). A `smart` link must launch one of
the SMART apps registered here: its URL's origin must be the origin of a registered app's
redirect URI (`smart_origins`, read at start).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from cds_hooks.service import JSON

INDICATORS = ("info", "warning", "critical")
SELECTION = ("at-most-one", "any")
ACTIONS = ("create", "update", "delete")


def problems(response: JSON, smart_origins: Collection[str] = ()) -> list[str]:
    cards = response.get("cards")  # required, and may be empty
    found = [p for k, v in response.items() if k != "cards" for p in _empties(v, k)]
    found += _empties(cards, "cards") if cards else []
    if not isinstance(cards, list):
        return [*found, "cards must be an array"]
    for i, card in enumerate(cards):
        found += _card(card, f"cards[{i}]", smart_origins)
    for i, action in enumerate(response.get("systemActions", [])):
        found += _action(action, f"systemActions[{i}]")
    return found


def _empties(value: Any, path: str) -> list[str]:
    """Where `value` holds null, "", [] or {}."""
    if value is None or value in ("", [], {}):
        return [f"{path} is empty or null"]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _empties(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _empties(v, f"{path}[{i}]")]
    return []


def _card(card: Any, path: str, smart_origins: Collection[str]) -> list[str]:
    if not isinstance(card, dict):
        return [f"{path} is not an object"]
    found = []
    summary = card.get("summary")
    if not isinstance(summary, str) or not 0 < len(summary) < 140:
        found.append(f"{path}.summary must be a string of 1-139 characters")
    if card.get("indicator") not in INDICATORS:
        found.append(f"{path}.indicator must be one of {', '.join(INDICATORS)}")
    source = card.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("label"), str):
        found.append(f"{path}.source.label is required")
    suggestions = card.get("suggestions", [])
    if suggestions and card.get("selectionBehavior") not in SELECTION:
        found.append(f"{path}.selectionBehavior is required with suggestions")
    for i, suggestion in enumerate(suggestions):
        if not isinstance(suggestion.get("label"), str):
            found.append(f"{path}.suggestions[{i}].label is required")
        for j, action in enumerate(suggestion.get("actions", [])):
            found += _action(action, f"{path}.suggestions[{i}].actions[{j}]")
    for i, reason in enumerate(card.get("overrideReasons", [])):
        if not isinstance(reason, dict) or not all(
            isinstance(reason.get(k), str) for k in ("code", "system", "display")
        ):
            found.append(f"{path}.overrideReasons[{i}] needs code, system and display")
    for i, link in enumerate(card.get("links", [])):
        found += _link(link, f"{path}.links[{i}]", smart_origins)
    return found


def _link(link: Any, path: str, smart_origins: Collection[str]) -> list[str]:
    if not isinstance(link, dict) or not isinstance(link.get("label"), str):
        return [f"{path}.label is required"]
    url, kind = link.get("url"), link.get("type")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        return [f"{path}.url must be an absolute http(s) URL"]
    if kind == "absolute":
        return [f"{path}.appContext is for smart links only"] if "appContext" in link else []
    if kind == "smart":
        known = origin(url) in smart_origins
        return [] if known else [f"{path} launches no registered SMART app ({url})"]
    return [f"{path}.type must be absolute or smart"]


def _action(action: Any, path: str) -> list[str]:
    if not isinstance(action, dict) or action.get("type") not in ACTIONS:
        return [f"{path}.type must be one of {', '.join(ACTIONS)}"]
    if not isinstance(action.get("description"), str):
        return [f"{path}.description is required"]
    if action["type"] == "delete":
        return [] if isinstance(action.get("resourceId"), str) else [f"{path} needs resourceId"]
    resource = action.get("resource")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [f"{path} needs a resource"]
    return []


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()
