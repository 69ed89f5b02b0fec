"""$validate-code on a CodeSystem and on a ValueSet.

https://hl7.org/fhir/R4/valueset-operation-validate-code.html: "Validate that a coded value
is in the set of codes allowed by a value set." Out: `result` ("True if the concept details
supplied are valid"), `message` ("Error details, if result = false. If this is provided when
result = true, the message carries hints and warnings") and `display` ("A valid display for
the concept if the system wishes to display this to a user"). A display that is not one of
the concept's (display or designations) leaves the result true with a warning message.
"If a CodeableConcept is provided, the result is true if any of the codings are valid."

https://hl7.org/fhir/R4/codesystem-operation-validate-code.html: the same against one system.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import BadRequest
from terminology.codesystem import CodeSystemIndex
from terminology.compose import Item, Resolver, membership
from terminology.parameters import optional, param, parameters


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def display_warning(
    code: str, given: str | None, display: str | None, designations: tuple[dict[str, Any], ...]
) -> str | None:
    """A warning when `given` is neither the display nor a designation of the concept."""
    if not given:
        return None
    known = [display] + [d.get("value") for d in designations]
    if any(isinstance(k, str) and _same(k, given) for k in known):
        return None
    expected = f" (expected '{display}')" if display else ""
    return f"The display '{given}' is not a valid display for code '{code}'{expected}"


def _result(ok: bool, message: str | None, display: str | None) -> dict[str, Any]:
    return parameters(
        param("result", "Boolean", ok),
        optional("message", "String", message),
        optional("display", "String", display),
    )


def validate_in_system(index: CodeSystemIndex, code: str, display: str | None) -> dict[str, Any]:
    """$validate-code against one code system."""
    if display is not None and not isinstance(display, str):
        raise BadRequest("display must be a string")
    concept = index.get(code)
    if concept is None:
        return _result(False, f"Unknown code '{code}' in code system {index.url}", None)
    warning = display_warning(concept.code, display, concept.display, concept.designations)
    return _result(True, warning, concept.display)


def codings_of(
    code: str | None,
    system: str | None,
    version: str | None,
    display: str | None,
    coding: dict[str, Any] | None,
    codeable_concept: dict[str, Any] | None,
) -> list[dict[str, Any]]:
    """The codings to test: the CodeableConcept's, the Coding, or code/system/display."""
    if codeable_concept is not None:
        codings = codeable_concept.get("coding") if isinstance(codeable_concept, dict) else None
        if not isinstance(codings, list) or not codings:
            raise BadRequest("codeableConcept has no coding to validate")
        return codings
    if coding is not None:
        return [coding]
    if code is None:
        raise BadRequest("$validate-code needs a code, a coding or a codeableConcept")
    return [{"code": code, "system": system, "version": version, "display": display}]


def validate_in_value_set(
    value_set: dict[str, Any], resolver: Resolver, codings: list[dict[str, Any]]
) -> dict[str, Any]:
    """$validate-code against a value set: true when any coding is in it."""
    url = value_set.get("url") or value_set.get("id") or "(inline)"
    messages = []
    for coding in codings:
        ok, message, display = _check(value_set, resolver, coding, url)
        if ok:
            return _result(True, message, display)
        messages.append(message)
    return _result(False, "; ".join(m for m in messages if m), None)


def _check(
    value_set: dict[str, Any], resolver: Resolver, coding: Any, url: str
) -> tuple[bool, str | None, str | None]:
    if not isinstance(coding, dict) or not isinstance(coding.get("code"), str):
        raise BadRequest("Each coding to validate needs a code")
    code, system = coding["code"], coding.get("system")
    if not all(v is None or isinstance(v, str) for v in (system, coding.get("display"))):
        raise BadRequest("Coding.system and Coding.display must be strings")
    verdict = membership(value_set, resolver, system, code)
    label = f"'{system}#{code}'" if system else f"'{code}'"
    if verdict.member is None:
        return (
            False,
            (
                f"Cannot tell whether {label} is in value set {url}: it depends on "
                "a code system or value set this server does not hold"
            ),
            None,
        )
    if not verdict.member or verdict.item is None:
        return False, f"The code {label} is not in value set {url}", None
    display, known = _known_names(resolver, verdict.item)
    return True, display_warning(code, coding.get("display"), display, known), display


def _known_names(resolver: Resolver, item: Item) -> tuple[str | None, tuple[dict[str, Any], ...]]:
    """The display to report and every designation the given display may match."""
    index = resolver.code_system(item.system, item.version)
    concept = index.get(item.code) if index is not None else None
    if concept is None:
        return item.display, item.designations
    own = ({"value": concept.display},) if concept.display else ()
    return item.display or concept.display, item.designations + concept.designations + own
