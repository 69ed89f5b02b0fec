"""`_include` and `_revinclude` values: https://hl7.org/fhir/R4/search.html#include

`_include=Observation:subject` adds the resources that the matches reference through
`subject`; `_include=Observation:subject:Patient` only those of type Patient;
`_include=Observation:*` follows every reference parameter of Observation and `_include=*`
every reference parameter of every matched type. `_revinclude=Provenance:target` adds the
Provenances whose `target` references a match. With `:iterate` (R4; `:recurse` is the
STU3 name) the same is done again for what was included, round after round.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_server.errors import BadRequest
from fhir_server.search.registry import SearchRegistry

WILDCARD = "*"
ITERATE_MODIFIERS = frozenset({"iterate", "recurse"})


@dataclass(frozen=True, slots=True)
class Include:
    """One `_include` (reverse False) or `_revinclude` (reverse True) value.

    `source` is the type holding the reference (`*`: any type, `_include=*` only),
    `params` the reference parameters followed (empty: every reference parameter of the
    source), `target` the referenced type wanted (None: any)."""

    reverse: bool
    source: str
    params: tuple[str, ...]
    target: str | None
    iterate: bool
    text: str  # as the client wrote it, for the self link

    def reference_params(self, registry: SearchRegistry, type: str) -> tuple[str, ...]:
        """The reference parameters of `type` this include follows (none if it does not
        apply to that type)."""
        if self.source not in (WILDCARD, type):
            return ()
        if self.params:
            return self.params
        return tuple(
            sorted(
                code
                for code, p in registry.params_for(type).items()
                if p.type == "reference" and p.expression
            )
        )


def parse_include(registry: SearchRegistry, name: str, value: str) -> Include | str:
    """The include `name=value` means, or why it is not supported (a str: ignored, or a
    400 under `handling=strict`). A malformed value is a 400 naming `name`."""
    base, _, modifier = name.partition(":")
    reverse = base == "_revinclude"
    if modifier and modifier not in ITERATE_MODIFIERS:
        return f"Modifier ':{modifier}' is not supported for {base}"
    text = value.strip()
    iterate = bool(modifier)
    if text == WILDCARD:
        if reverse:
            return "_revinclude=* is not supported: name the type (e.g. Provenance:*)"
        return Include(False, WILDCARD, (), None, iterate, text)
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise BadRequest(
            f"{name} must be Type:parameter[:targetType] or *, not '{value}'", expression=(name,)
        )
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if source not in registry.resource_types:
        raise BadRequest(f"{name}: unknown resource type '{source}'", expression=(name,))
    if code == WILDCARD:
        if target is not None:
            raise BadRequest(f"{name}: {source}:* takes no target type", expression=(name,))
        return Include(reverse, source, (), None, iterate, text)
    param = registry.params_for(source).get(code)
    if param is None:
        return f"Unknown search parameter '{code}' for {source} in {name}"
    if param.type != "reference":
        raise BadRequest(
            f"{name}: '{source}:{code}' is not a reference parameter", expression=(name,)
        )
    if target is not None and target not in registry.targets(param, source):
        raise BadRequest(f"{name}: '{source}:{code}' cannot reference {target}", expression=(name,))
    return Include(reverse, source, (code,), target, iterate, text)
