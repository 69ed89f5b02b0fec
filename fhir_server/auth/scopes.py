"""SMART clinical scopes, v1 and v2: `patient/Observation.rs?category=laboratory` and kin.

https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html -- a clinical scope
is `<level>/<resource type or *>.<permissions>[?<query>]`:

- level `patient/` (the launch patient's data), `user/` (what the user may see) or
  `system/` (a backend service: everything its client was granted);
- permissions v2, "a string of one or more permission letters, in the order c, r, u, d, s"
  (`cruds`, `rs`, `cud`), or v1 `read` (= `rs`), `write` (= `cud`) and `*` (= `cruds`);
- v2 only, a granular query (`?category=...`): "the scope grants access only to resources
  that match the query", applied as a search restriction. A query on a v1 scope is not
  SMART and makes the scope invalid.

`openid`, `fhirUser`, `profile`, `launch`, `launch/patient`, `offline_access`,
`online_access` and the like are not resource scopes: they grant no access here. A scope
that does not parse (letters out of order, an unknown level, a lowercase type) is ignored,
never an error: it grants nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qsl

Level = Literal["patient", "user", "system"]
LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]+)(?:\?(.*))?$")
_V2 = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True, slots=True)
class Scope:
    """One clinical scope: `type` "*" for every type, `letters` a subset of c r u d s,
    `query` the granular restriction as (name, value) pairs (empty: none)."""

    level: Level
    type: str
    letters: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()

    def grants(self, letter: str, type: str | None) -> bool:
        """Whether this scope allows `letter` on `type` (None: some type)."""
        return letter in self.letters and (type is None or self.type in ("*", type))


def parse_scope(text: str) -> Scope | None:
    """The clinical scope `text` stands for, or None (not a resource scope, or invalid)."""
    found = _SCOPE.match(text)
    if found is None:
        return None
    level, type, permissions, query = found.groups()
    if permissions in _V1:
        if query is not None:  # granular queries are a v2 feature
            return None
        letters = _V1[permissions]
    elif permissions and _V2.match(permissions):
        letters = permissions
    else:
        return None
    pairs: tuple[tuple[str, str], ...] = ()
    if query is not None:
        try:
            pairs = tuple(parse_qsl(query, keep_blank_values=False, strict_parsing=True))
        except ValueError:
            return None
        if not pairs:
            return None
    level_: Level = level  # type: ignore[assignment]  # the regex admits only the three
    return Scope(level_, type, frozenset(letters), pairs)


@lru_cache(maxsize=4096)
def parse_scopes(scopes: frozenset[str]) -> tuple[Scope, ...]:
    """The clinical scopes among `scopes` (a token's granted set), in a stable order."""
    parsed = (parse_scope(text) for text in sorted(scopes))
    return tuple(scope for scope in parsed if scope is not None)


def split_scope(value: str) -> frozenset[str]:
    """A space-separated `scope` claim as a set of scope strings."""
    return frozenset(value.split())


def letter_string(letters: Iterable[str]) -> str:
    """Letters in the canonical order c r u d s (for messages)."""
    wanted = set(letters)
    return "".join(letter for letter in LETTERS if letter in wanted)
