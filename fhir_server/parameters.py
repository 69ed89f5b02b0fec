"""Request parameters every layer reads the same way.

- `HTTP_ONLY`: `_format` and `_pretty` (https://hl7.org/fhir/R4/http.html#parameters) shape
  the HTTP response; the API answers them and no interaction takes them as input (not a
  search criterion, not an operation parameter, not conditional-write criteria).
- `non_negative`: an integer parameter such as `_count`, `_offset` or an operation's
  `count`, or a 400 that names it.
- `encode_token` / `decode_token`: the opaque paging tokens (`_page`) of search and
  `$everything`: URL-safe base64 of a small JSON object; whatever a client makes of one
  that this server did not issue is a 400 naming the parameter.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, TypeGuard

import orjson

from fhir_server.errors import BadRequest

FORMAT = "_format"
PRETTY = "_pretty"
HTTP_ONLY = frozenset({FORMAT, PRETTY})
PAGE = "_page"


MAX_INT64 = 2**63 - 1  # the largest offset, version or key either engine stores


def non_negative(name: str, value: object) -> int:
    """`value` as an int >= 0 (ASCII digits, at most 64 bits), or a 400 naming the parameter."""
    return whole_number(name, str(value))


def whole_number(name: str, value: str, *, low: int = 0) -> int:
    """`value` as a whole number from `low` to 2**63 - 1 in ASCII digits, or a 400
    naming `name` (`int()` would take "١" as 1 and "1_000"; SQLite and BSON hold 64 bits)."""
    text = value.strip()
    if (
        not (text.isascii() and text.isdigit())
        or len(text.lstrip("0")) > 19
        or not low <= int(text) <= MAX_INT64
    ):
        raise BadRequest(
            f"{name} must be a whole number from {low} to {MAX_INT64}, not '{value[:64]}'",
            expression=(name,),
        )
    return int(text)


def encode_token(data: dict[str, Any]) -> str:
    """An opaque paging token holding `data` (JSON values)."""
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def decode_token(token: str, name: str = PAGE) -> dict[str, Any]:
    """The data of a token `encode_token` made; a 400 naming `name` for anything else."""
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, binascii.Error):
        data = None
    if not isinstance(data, dict):
        raise bad_token(name)
    return data


def is_key(values: object) -> TypeGuard[list[str | int | float | None]]:
    """A sort key as tokens carry it: a list of plain JSON values (str, number, null)."""
    return isinstance(values, list) and all(_plain(v) for v in values)


def _plain(value: object) -> bool:
    """What the engines put in a page key: a 64-bit int, a float, a string or nothing."""
    if isinstance(value, int):
        return -MAX_INT64 - 1 <= value <= MAX_INT64
    return value is None or isinstance(value, str | float)


def bad_token(name: str = PAGE) -> BadRequest:
    return BadRequest(f"{name} is not a paging token of this server", expression=(name,))


def without_http_only(query: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query's parameters less `_format` and `_pretty`."""
    return [(k, v) for k, v in query if k not in HTTP_ONLY]
