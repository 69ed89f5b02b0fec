"""Token search parameters: a system and a code, matched exactly.

https://hl7.org/fhir/R4/search.html#token -- indexed from Coding and CodeableConcept
(system, code; display and text for :text), Identifier (system, value; type.text),
ContactPoint (value) and the primitives code, boolean, id, uri and string (no system).
Search values are `[system]|[code]`, `|[code]` (no system), `[system]|` (any code) or
`[code]` (any system); `:not` negates.

Terminology modifiers (https://hl7.org/fhir/R4/search.html#modifiers): `:in` / `:not-in`
take a value set (its canonical URL, or `ValueSet/id` of a stored one) and match codings
in / not in its expansion; `:below` / `:above` take `system|code` and match the code and
what it subsumes / what subsumes it. The terminology service answers them at parse time.

`:text` matches the text of the code (CodeableConcept.text, Coding.display, the text of
Identifier.type) the way a string parameter does: it starts with the value, case and
accents ignored. `:of-type` takes `[type system]|[type code]|[identifier value]` and
matches an Identifier by its type coding and value; for it every Identifier with a typed
coding is indexed once more under the name `[code]:of-type`, system `[type system]|[type
code]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_server.errors import BadRequest, NotImplementedHere
from fhir_server.search.conditions import TokenCondition, TokenSetCondition, TokenTextCondition
from fhir_server.search.limits import too_much
from fhir_server.search.normalize import normalize
from fhir_server.search.registry import SearchParam
from fhir_server.search.types.common import ParseContext, split_escaped, unescape
from fhir_server.search.values import TokenValue

MODIFIERS = frozenset({"not", "in", "not-in", "above", "below", "text", "of-type"})
_TERMINOLOGY = frozenset({"in", "not-in", "above", "below"})
_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def extract(code: str, fhir_type: str | None, data: Any) -> Iterator[TokenValue]:
    if isinstance(data, bool):
        yield TokenValue(code, None, "true" if data else "false")
    elif isinstance(data, str | int | float):
        yield TokenValue(code, None, str(data))
    elif isinstance(data, dict):
        handler = _COMPLEX.get(fhir_type or _guess(data))
        if handler is not None:
            yield from handler(code, data)


def _codeable_concept(code: str, data: dict[str, Any]) -> Iterator[TokenValue]:
    for coding in data.get("coding") or ():
        if isinstance(coding, dict):
            yield from _coding(code, coding)
    text = data.get("text")
    if isinstance(text, str) and text:
        yield TokenValue(code, None, None, normalize(text))


def _coding(code: str, data: dict[str, Any]) -> Iterator[TokenValue]:
    system, value, display = data.get("system"), data.get("code"), data.get("display")
    if value is not None or system is not None:
        yield TokenValue(code, system, value, normalize(display) if display else None)


def _identifier(code: str, data: dict[str, Any]) -> Iterator[TokenValue]:
    system, value = data.get("system"), data.get("value")
    kind = data.get("type")
    text = kind.get("text") if isinstance(kind, dict) else None
    if value is not None or system is not None:
        yield TokenValue(code, system, value, normalize(text) if text else None)
    for coding in (kind.get("coding") or ()) if isinstance(kind, dict) else ():
        if isinstance(coding, dict) and isinstance(value, str):
            type_code = f"{coding.get('system') or ''}|{coding.get('code') or ''}"
            yield TokenValue(f"{code}:of-type", type_code, value)


def _contact_point(code: str, data: dict[str, Any]) -> Iterator[TokenValue]:
    value = data.get("value")
    if isinstance(value, str):
        yield TokenValue(code, None, value)


def _guess(data: dict[str, Any]) -> str:
    """The FHIR type of an untyped value (from a union expression), by its shape."""
    if "coding" in data or set(data) <= {"text", "id", "extension"}:
        return "CodeableConcept"
    if "code" in data or "display" in data:
        return "Coding"
    if data.get("system") in _CONTACT_SYSTEMS or "rank" in data:
        return "ContactPoint"
    return "Identifier"


_COMPLEX = {
    "CodeableConcept": _codeable_concept,
    "Coding": _coding,
    "Identifier": _identifier,
    "ContactPoint": _contact_point,
}


def parse(
    param: SearchParam, modifier: str | None, value: str, ctx: ParseContext
) -> TokenCondition | TokenSetCondition | TokenTextCondition:
    if modifier == "text":
        return TokenTextCondition(param.code, normalize(unescape(value)))
    if modifier == "of-type":
        return _of_type(param, value)
    if modifier in _TERMINOLOGY:
        return _terminology(param, modifier, unescape(value.strip()), ctx)
    negate = modifier == "not"
    parts = split_escaped(value, "|")
    if len(parts) == 1:
        return TokenCondition(param.code, None, unescape(value), negate)
    system, code = unescape(parts[0]), unescape("|".join(parts[1:]))
    return TokenCondition(param.code, system, code or None, negate)


def _of_type(param: SearchParam, value: str) -> TokenCondition:
    parts = [unescape(p) for p in split_escaped(value, "|")]
    if len(parts) != 3 or not parts[1] or not parts[2]:
        name = f"{param.code}:of-type"
        raise BadRequest(
            f"'{name}' takes [type system]|[type code]|[value], not '{value}'", expression=(name,)
        )
    return TokenCondition(f"{param.code}:of-type", f"{parts[0]}|{parts[1]}", parts[2])


def _terminology(
    param: SearchParam, modifier: str, value: str, ctx: ParseContext
) -> TokenSetCondition:
    name = f"{param.code}:{modifier}"
    if ctx.codes is None:
        raise NotImplementedHere(f"'{name}' needs the terminology service, which is not running")
    if modifier in ("in", "not-in"):
        codes = _bounded(name, ctx.codes.codes_in(value))
        return TokenSetCondition(param.code, codes, modifier == "not-in")
    system, bar, code = value.partition("|")
    if not bar or not system or not code:
        raise BadRequest(f"'{name}' takes system|code, not '{value}'", expression=(name,))
    lookup = ctx.codes.codes_below if modifier == "below" else ctx.codes.codes_above
    return TokenSetCondition(
        param.code, _bounded(name, frozenset((system, c) for c in lookup(system, code)))
    )


MAX_EXPANSION = 50_000  # codes one :in/:below/:above search may test: about 2 MB of filter


def _bounded(name: str, codes: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """The codes an expansion gave, unless more than a search can carry (400 naming `name`)."""
    if len(codes) > MAX_EXPANSION:
        raise too_much(
            name,
            f"'{name}' expands to {len(codes):,} codes: at most {MAX_EXPANSION:,} are "
            "searched at once; use a narrower value set or code",
        )
    return codes
