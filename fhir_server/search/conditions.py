"""The parsed form of a search, handed to storage engines.

A `SearchQuery` is an AND of clauses; a clause is an OR of conditions (the FHIR `,`).
Each condition names one search parameter of one type and is matched against that
type's index values (see `values.py`). Engines translate conditions; they do not parse
URLs. Beyond one parameter's values: `ChainCondition` and `HasCondition` hold an inner
`SearchQuery` on other types (chaining and reverse chaining), `CompositeCondition` matches
components within one element, `NearCondition` a distance, and `AllOf` / `AnyOf` / `Not`
compose conditions freely (for `_filter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

Prefix = Literal["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


@dataclass(frozen=True, slots=True)
class IdCondition:
    """`_id`: the logical id is one of these."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastUpdatedCondition:
    """`_lastUpdated`: compares meta.lastUpdated (an instant) with the range [low, high]."""

    prefix: Prefix
    low: str
    high: str


@dataclass(frozen=True, slots=True)
class TokenCondition:
    """system|code matching. system None: any system; system "": no system; code None: any."""

    param: str
    system: str | None
    code: str | None
    negate: bool = False  # :not


@dataclass(frozen=True, slots=True)
class TokenSetCondition:
    """Any of a set of (system, code) pairs: token :in, :not-in (negate), :above, :below.

    The terminology service turns the value set or the hierarchy into the set at parse time.
    """

    param: str
    codes: frozenset[tuple[str, str]]
    negate: bool = False  # :not-in

    def by_system(self) -> dict[str, list[str]]:
        """The codes grouped by system, each list sorted (stable SQL and filters)."""
        grouped: dict[str, list[str]] = {}
        for system, code in sorted(self.codes):
            grouped.setdefault(system, []).append(code)
        return grouped


@dataclass(frozen=True, slots=True)
class StringCondition:
    param: str
    value: str  # normalized for "start" and "contains"; as written for "exact"
    mode: Literal["start", "exact", "contains"] = "start"


@dataclass(frozen=True, slots=True)
class ReferenceCondition:
    """target_type/target_id for local references; url for absolute or canonical ones."""

    param: str
    target_type: str | None = None
    target_id: str | None = None
    url: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True)
class DateCondition:
    """A date parameter compared with the search value's range [low, high] by `prefix`."""

    param: str
    prefix: Prefix
    low: str
    high: str


@dataclass(frozen=True, slots=True)
class NumberCondition:
    """The search value's range as its prefix reads it: the point [v, v] for gt, lt, ge,
    le, sa, eb; the implicit precision for eq, ne; 10% for ap (`types.common.search_range`).
    Indexed values are exact points (or a Range's bounds)."""

    param: str
    prefix: Prefix
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityCondition:
    """A number read as for `NumberCondition`, with the unit's system and code."""

    param: str
    prefix: Prefix
    low: float
    high: float
    system: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class UriCondition:
    param: str
    uri: str
    mode: Literal["eq", "below", "above"] = "eq"


@dataclass(frozen=True, slots=True)
class MissingCondition:
    """`:missing=true|false`: whether the resource has any index value for `param`."""

    param: str
    param_type: Literal[
        "token", "string", "reference", "date", "number", "quantity", "uri", "composite", "special"
    ]
    missing: bool


@dataclass(frozen=True, slots=True)
class TokenTextCondition:
    """token `:text`: the code's text (CodeableConcept.text, Coding.display, Identifier.type
    text) starts with `text` after string normalization (case and accents)."""

    param: str
    text: str
    mode: Literal["start", "exact", "contains", "end"] = "start"


@dataclass(frozen=True, slots=True)
class ChainCondition:
    """Chaining (`subject:Patient.name=x`): the local reference `param` points to a live
    resource of `query.types` that matches every clause of `query`."""

    param: str
    query: SearchQuery


@dataclass(frozen=True, slots=True)
class HasCondition:
    """Reverse chaining (`_has:Observation:patient:code=x`): some live resource of
    `query.types` matching `query` references the searched resource through `param`."""

    param: str
    query: SearchQuery


@dataclass(frozen=True, slots=True)
class CompositeCondition:
    """A composite parameter: one indexed element matches every component's condition.

    `components[i]` is a condition of the i-th component's type (its `param` is unused)."""

    param: str
    components: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class NearCondition:
    """Location `near`: a position within `distance_km` (great circle) of (lat, lon)."""

    param: str
    latitude: float
    longitude: float
    distance_km: float


@dataclass(frozen=True, slots=True)
class HierarchyCondition:
    """Reference `:below` / `:above` (https://hl7.org/fhir/R4/search.html#reference): `param`
    references `target_type/target_id` or a resource below (above) it in the hierarchy
    that `target_type`'s circular parameter `via` makes (Location `partof`). Engines never
    see it: the search interaction replaces it by the references it stands for."""

    param: str
    target_type: str
    target_id: str
    above: bool
    via: str


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """Resources that do not match `condition` (those without the element included)."""

    condition: Condition


Condition = (
    IdCondition
    | LastUpdatedCondition
    | TokenCondition
    | TokenSetCondition
    | StringCondition
    | ReferenceCondition
    | DateCondition
    | NumberCondition
    | QuantityCondition
    | UriCondition
    | MissingCondition
    | TokenTextCondition
    | ChainCondition
    | HasCondition
    | CompositeCondition
    | NearCondition
    | HierarchyCondition
    | AllOf
    | AnyOf
    | Not
)

Clause = tuple[Condition, ...]  # OR


@dataclass(frozen=True, slots=True)
class SortKey:
    """Sort by a parameter: `_id`, `_lastUpdated`, or one of type `kind` (string, token,
    date, number, quantity, reference, uri). A resource with several values sorts by its
    lowest ascending and its highest descending; one without a value sorts last."""

    param: str
    descending: bool = False
    kind: str | None = None  # None for _id and _lastUpdated


@dataclass(frozen=True, slots=True)
class PageKey:
    """Keyset paging: the results just after (or, `before`, just before) the resource whose
    sort key is `key` -- one value per sort key (None: no value), then the engine's
    tiebreak (insertion order). Engines produce these keys in `Page.keys`."""

    key: tuple[object, ...]
    before: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """Resources of `types` (empty: every type) matching all `clauses`.

    Results are ordered by `sort`, then by insertion order as the stable tiebreak.
    `count` 0 means only the total is wanted (`_summary=count`).
    """

    types: tuple[str, ...]
    clauses: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    offset: int = 0
    total: Literal["none", "estimate", "accurate"] = "accurate"
    page: PageKey | None = None  # continue after/before this key (offset then applies)


def range_matches(
    prefix: Prefix, low: object, high: object, value_low: object, value_high: object
) -> bool:
    """The FHIR R4 prefix rules: search value [low, high] against indexed [value_low, value_high].

    https://hl7.org/fhir/R4/search.html#prefix -- the reference both engines translate:
    eq: the search range fully contains the value's; ne: it does not; gt: the range above
    the search value overlaps the value's; lt: the range below does; ge/le: gt/lt or eq;
    sa: the value starts after the search range; eb: it ends before; ap: they overlap.
    """
    contained = value_low >= low and value_high <= high  # type: ignore[operator]
    rules: dict[str, bool] = {
        "eq": contained,
        "ne": not contained,
        "gt": value_high > high,  # type: ignore[operator]
        "lt": value_low < low,  # type: ignore[operator]
        "ge": value_high > high or contained,  # type: ignore[operator]
        "le": value_low < low or contained,  # type: ignore[operator]
        "sa": value_low > high,  # type: ignore[operator]
        "eb": value_high < low,  # type: ignore[operator]
        "ap": value_low <= high and value_high >= low,  # type: ignore[operator]
    }
    return rules[prefix]


def prefix_successor(prefix: str) -> str | None:
    """The least string above every string that starts with `prefix` (None: no bound).

    Engines turn "starts with" into the index range [prefix, successor): both compare
    strings by code point. Surrogates are skipped; a prefix of only U+10FFFF has no bound.
    """
    while prefix:
        last = ord(prefix[-1]) + 1
        if last <= 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if 0xD800 <= last <= 0xDFFF else last)
        prefix = prefix[:-1]
    return None


def inner_queries(query: SearchQuery) -> list[SearchQuery]:
    """The inner queries of the chains and `_has` conditions directly in `query`."""
    found: list[SearchQuery] = []

    def visit(c: Condition) -> None:
        if isinstance(c, ChainCondition | HasCondition):
            found.append(c.query)
        elif isinstance(c, AllOf | AnyOf):
            for child in c.conditions:
                visit(child)
        elif isinstance(c, Not):
            visit(c.condition)

    for clause in query.clauses:
        for condition in clause:
            visit(condition)
    return found


def map_inner(query: SearchQuery, change: Callable[[SearchQuery], SearchQuery]) -> SearchQuery:
    """`query` with `change` applied to every inner query of its chains and `_has`, at
    every depth (innermost first)."""

    def visit(c: Condition) -> Condition:
        match c:
            case ChainCondition() | HasCondition():
                return replace(c, query=change(map_inner(c.query, change)))
            case AllOf() | AnyOf():
                return replace(c, conditions=tuple(visit(x) for x in c.conditions))
            case Not():
                return Not(visit(c.condition))
        return c

    if not inner_queries(query):
        return query
    clauses = tuple(tuple(visit(c) for c in clause) for clause in query.clauses)
    return replace(query, clauses=clauses)


def map_conditions(query: SearchQuery, change: Callable[[Condition], Condition]) -> SearchQuery:
    """`query` with `change` applied to every leaf condition, inside `AllOf`/`AnyOf`/`Not`
    and in the inner queries of chains and `_has`, at every depth."""

    def visit(c: Condition) -> Condition:
        match c:
            case ChainCondition() | HasCondition():
                return replace(c, query=map_conditions(c.query, change))
            case AllOf() | AnyOf():
                return replace(c, conditions=tuple(visit(x) for x in c.conditions))
            case Not():
                return Not(visit(c.condition))
        return change(c)

    clauses = tuple(tuple(visit(c) for c in clause) for clause in query.clauses)
    return replace(query, clauses=clauses)
