"""The consent screen's content: each requested scope in plain words, whether the user's
role lets them grant it, and whether they may untick it.

Identity and context scopes (`openid`, `fhirUser`, `launch/patient`...) are part of how
the app works and are always granted with the rest; data scopes and `offline_access` /
`online_access` are optional: the user may untick them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fhir_server.auth.roles import IDENTITY_SCOPES, may_grant
from fhir_server.auth.scopes import LETTERS, parse_scope

FIXED = {
    "openid": "Confirm that it is you who signed in",
    "fhirUser": "Know which practitioner, patient or person record is yours",
    "profile": "Know which practitioner, patient or person record is yours",
    "launch": "Receive the patient and encounter opened in the EHR",
    "launch/patient": "Know which patient you select",
    "launch/encounter": "Know which encounter you select",
    "offline_access": "Keep access after you close the app, until you revoke it",
    "online_access": "Keep access while you stay signed in",
}
OPTIONAL_IDENTITY = frozenset({"offline_access", "online_access"})
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_WHOSE = {
    "patient": "about the selected patient",
    "user": "that you can access",
    "system": "on the whole server",
}


@dataclass(frozen=True, slots=True)
class ScopeChoice:
    """One line of the consent screen."""

    scope: str
    text: str
    allowed: bool  # the user's role lets them grant it
    optional: bool  # the user may untick it


def describe(scope: str) -> str:
    """A requested scope in plain words."""
    if scope in FIXED:
        return FIXED[scope]
    parsed = parse_scope(scope)
    if parsed is None:
        return f"Use the permission “{scope}”"
    verbs = [_VERBS[c] for c in LETTERS if c in parsed.letters]
    what = "all data" if parsed.type == "*" else _plural(parsed.type)
    text = f"{_join(verbs).capitalize()} {what} {_WHOSE[parsed.level]}"
    _, _, query = scope.partition("?")
    if query:
        limits = [f"{name} is {value}" for name, value in parse_qsl(query)]
        text += f", only where {_join(limits)}"
    return text


def _plural(resource_type: str) -> str:
    words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", resource_type).lower()
    if words.endswith(("s", "x")):
        return words + "es"
    if words.endswith("y") and not words.endswith(("ay", "ey", "oy")):
        return words[:-1] + "ies"
    return words + "s"


def _join(words: Sequence[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def choices(requested: Iterable[str], role: str) -> list[ScopeChoice]:
    """The consent screen's lines, in the order the app asked."""
    seen: set[str] = set()
    lines = []
    for scope in requested:
        if scope in seen:
            continue
        seen.add(scope)
        optional = scope not in IDENTITY_SCOPES or scope in OPTIONAL_IDENTITY
        lines.append(ScopeChoice(scope, describe(scope), may_grant(role, scope), optional))
    return lines


def granted(requested: Iterable[str], role: str, ticked: Iterable[str]) -> list[str]:
    """What the user grants: the required scopes and the optional ones they left ticked,
    among those the app requested and the role allows (a forged form adds nothing)."""
    kept = set(ticked)
    return [
        line.scope
        for line in choices(requested, role)
        if line.allowed and (not line.optional or line.scope in kept)
    ]
