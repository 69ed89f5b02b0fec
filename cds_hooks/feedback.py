"""Feedback on cards: https://cds-hooks.hl7.org/2.0/#feedback

"The CDS Client MAY send feedback ... `POST {baseUrl}/cds-services/{serviceId}/feedback`"
with a `feedback` array, each item: `card` (REQUIRED, the card's uuid), `outcome`
(REQUIRED, "accepted" or "overridden"), `acceptedSuggestions` (with `accepted`, each an
object with the suggestion's `id`), `overrideReason` (with `overridden`: `reason`, a
Coding, and/or `userComment`), `outcomeTimestamp` (REQUIRED, an ISO 8601 instant).

`parse_feedback` turns the body into the records the store keeps; anything else is a 400.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from cds_hooks.service import JSON
from fhir_server.errors import BadRequest

OUTCOMES = ("accepted", "overridden")
MAX_ITEMS = 100
MAX_ID = 128  # a card uuid or suggestion id (a UUID is 36 characters)
MAX_TEXT = 1024  # a Coding's code, system and display


def parse_feedback(body: bytes) -> list[JSON]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the request body is not JSON") from None
    items = data.get("feedback") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items or len(items) > MAX_ITEMS:
        raise BadRequest(f"feedback is required (an array of 1-{MAX_ITEMS} objects)")
    return [_item(item, f"feedback[{i}]") for i, item in enumerate(items)]


def _item(item: Any, path: str) -> JSON:
    if not isinstance(item, dict):
        raise BadRequest(f"{path} must be an object")
    card, outcome, when = item.get("card"), item.get("outcome"), item.get("outcomeTimestamp")
    if not _short(card, MAX_ID):
        raise BadRequest(f"{path}.card is required (the card's uuid, <= {MAX_ID} characters)")
    if outcome not in OUTCOMES:
        raise BadRequest(f"{path}.outcome must be accepted or overridden")
    if not isinstance(when, str) or not _instant(when):
        raise BadRequest(f"{path}.outcomeTimestamp is required (an ISO 8601 instant)")
    record: JSON = {"card": card, "outcome": outcome, "outcomeTimestamp": when}
    if outcome == "accepted":
        record["acceptedSuggestions"] = _accepted(item.get("acceptedSuggestions"), path)
    elif "overrideReason" in item:
        record["overrideReason"] = _reason(item["overrideReason"], path)
    return record


def _accepted(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > MAX_ITEMS
        or not all(isinstance(s, dict) and _short(s.get("id"), MAX_ID) for s in value)
    ):
        raise BadRequest(
            f"{path}.acceptedSuggestions must be at most {MAX_ITEMS} objects with an id "
            f"(<= {MAX_ID} characters)"
        )
    return [s["id"] for s in value]


def _reason(value: Any, path: str) -> JSON:
    if not isinstance(value, dict):
        raise BadRequest(f"{path}.overrideReason must be an object")
    reason, comment = value.get("reason"), value.get("userComment")
    result: JSON = {}
    if reason is not None:
        if not isinstance(reason, dict) or not all(
            _short(reason.get(k), MAX_TEXT) for k in ("code", "system")
        ):
            raise BadRequest(f"{path}.overrideReason.reason must be a Coding (code, system)")
        if "display" in reason and not _short(reason["display"], MAX_TEXT):
            raise BadRequest(f"{path}.overrideReason.reason.display must be text (<= {MAX_TEXT})")
        result["reason"] = {k: reason[k] for k in ("code", "system", "display") if k in reason}
    if comment is not None:
        if not isinstance(comment, str) or len(comment) > 4096:
            raise BadRequest(f"{path}.overrideReason.userComment must be text (<= 4096)")
        result["userComment"] = comment
    if not result:
        raise BadRequest(f"{path}.overrideReason needs reason or userComment")
    return result


def _short(value: Any, limit: int) -> bool:
    """A non-empty string of at most `limit` characters (what is stored stays bounded)."""
    return isinstance(value, str) and 0 < len(value) <= limit


def _instant(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
