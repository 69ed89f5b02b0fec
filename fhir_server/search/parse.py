"""Parsing a FHIR search: URL parameters into a `SearchQuery` plus the result options.

https://hl7.org/fhir/R4/search.html -- a repeated parameter is an AND ("the search
criteria are joined by AND"), a comma inside one value an OR. Parameter names may carry a
modifier (`name:exact`, `code:not`, `subject:Patient`, `any:missing`). Result parameters:
`_count`, `_offset`, `_sort`, `_total`, `_summary`, `_elements`.

"Servers SHALL ignore unknown or unsupported parameters" unless the client asked for
strict handling (`Prefer: handling=strict`), when they are an error: under `strict` an
unknown parameter, modifier or sort key is a `BadRequest`, otherwise it is listed in
`ignored`. A malformed value (a date that is not a date) is always a `BadRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, cast

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    Clause,
    Condition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    SearchQuery,
    SortKey,
)
from fhir_server.search.dates import parse_instant_range
from fhir_server.search.registry import SearchParam, SearchRegistry
from fhir_server.search.types import TYPES, ParseContext, accepts
from fhir_server.search.types.common import CodeLookup, bad_value, split_escaped, split_prefix

DEFAULT_COUNT = 20
NOT_SEARCH = frozenset({"_format", "_pretty", "_type"})  # handled by the HTTP layer or caller
SORTABLE = frozenset({"_id", "_lastUpdated"})
SUMMARIES = frozenset({"true", "text", "data", "count", "false"})
TOTALS = frozenset({"none", "estimate", "accurate"})
NOT_YET = frozenset({"_include", "_revinclude", "_contained", "_containedType"})

_IndexedType = Literal["token", "string", "reference", "date", "number", "quantity", "uri"]
_Build = Callable[[str, str], list[Condition]]


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    """The query for storage plus what the search interaction needs to build the Bundle.

    `used` holds the parameters actually applied, as (name, value) in request order, for
    the Bundle's `self` link (`_count` and `_offset` are left to the paging links).
    """

    query: SearchQuery
    used: list[tuple[str, str]]
    ignored: list[str]
    summary: str | None = None
    elements: tuple[str, ...] = ()
    include: list[str] = field(default_factory=list)
    revinclude: list[str] = field(default_factory=list)


def parse_search(
    registry: SearchRegistry,
    types: tuple[str, ...],
    params: list[tuple[str, str]],
    *,
    strict: bool,
    max_count: int = 1000,
    default_count: int = DEFAULT_COUNT,
    base: str | None = None,
    codes: CodeLookup | None = None,
) -> ParsedSearch:
    """Parse `params` for a search of `types` (empty: all types, Resource-level parameters).

    `base` is the server's base URL: absolute references under it are matched as local.
    """
    parser = _Parser(registry, types, strict, max_count, ParseContext(registry, base, codes))
    parser.count = min(default_count, max_count)  # until a _count says otherwise
    for name, value in params:
        parser.add(name.strip(), value)
    return parser.result()


class _Parser:
    def __init__(
        self,
        registry: SearchRegistry,
        types: tuple[str, ...],
        strict: bool,
        max_count: int,
        ctx: ParseContext,
    ) -> None:
        self.registry, self.types, self.strict = registry, types, strict
        self.max_count, self.ctx = max_count, ctx
        self.clauses: list[Clause] = []
        self.used: list[tuple[str, str]] = []
        self.ignored: list[str] = []
        self.sort: tuple[SortKey, ...] = ()
        self.count, self.offset = DEFAULT_COUNT, 0
        self.total: Literal["none", "estimate", "accurate"] = "accurate"
        self.summary: str | None = None
        self.elements: tuple[str, ...] = ()

    def result(self) -> ParsedSearch:
        count, total = self.count, self.total
        if self.summary == "count":
            count, total = 0, "accurate"
        query = SearchQuery(self.types, tuple(self.clauses), self.sort, count, self.offset, total)
        return ParsedSearch(query, self.used, self.ignored, self.summary, self.elements)

    def add(self, name: str, value: str) -> None:
        if name in NOT_SEARCH:
            return
        handler = _RESULT_PARAMS.get(name)
        if name.partition(":")[0] in NOT_YET:
            self.unsupported(name, f"Search parameter '{name}' is not supported yet")
        elif handler is not None:
            handler(self, value.strip())
        elif value.strip():  # "name=" is no criterion at all
            self.criterion(name, value)

    # -- search criteria ---------------------------------------------------------------

    def criterion(self, name: str, value: str) -> None:
        code, _, modifier = name.partition(":")
        if code == "_id":
            self.special(name, value, modifier, self.ids)
        elif code == "_lastUpdated":
            self.special(name, value, modifier, self.last_updated)
        else:
            param = self.param(code)
            if param is None:
                self.unsupported(name, self.why_not(code))
            elif modifier == "missing":
                self.missing(name, value, param)
            elif modifier and not accepts(param, modifier, self.ctx):
                self.unsupported(name, f"Modifier ':{modifier}' is not supported for '{code}'")
            else:
                kind = TYPES[param.type]
                parts = [v for v in split_escaped(value, ",") if v.strip()]
                self.clause(name, value, [kind.parse(param, modifier or None, v, self.ctx)
                                          for v in parts])

    def special(self, name: str, value: str, modifier: str, build: _Build) -> None:
        if modifier:
            self.unsupported(name, f"Modifier ':{modifier}' is not supported for '{name}'")
        else:
            self.clause(name, value, build(name, value))

    def clause(self, name: str, value: str, conditions: list[Condition]) -> None:
        if conditions:
            self.clauses.append(tuple(conditions))
            self.used.append((name, value))

    def ids(self, name: str, value: str) -> list[Condition]:
        ids = tuple(v.strip() for v in value.split(",") if v.strip())
        return [IdCondition(ids)] if ids else []

    def last_updated(self, name: str, value: str) -> list[Condition]:
        out: list[Condition] = []
        for part in value.split(","):
            prefix, text = split_prefix(part.strip())
            found = parse_instant_range(text)
            if found is None:
                raise bad_value(name, part, "date (yyyy-mm-ddThh:mm:ss[Z|(+|-)hh:mm])")
            out.append(LastUpdatedCondition(prefix, *found))
        return out

    def missing(self, name: str, value: str, param: SearchParam) -> None:
        flag = value.strip().lower()
        if flag not in ("true", "false"):
            raise BadRequest(f"'{name}' must be true or false, not '{value}'", expression=(name,))
        param_type = cast(_IndexedType, param.type)
        self.clause(name, flag, [MissingCondition(param.code, param_type, flag == "true")])

    def param(self, code: str) -> SearchParam | None:
        """The parameter `code` of every searched type (None unless all have it, searchable)."""
        types = self.types or ("Resource",)
        found = [self.registry.params_for(t).get(code) for t in types]
        params = [p for p in found if p is not None and p.type in TYPES and p.expression]
        if not params or len(params) != len(found):
            return None
        if len({p.type for p in params}) > 1:
            raise BadRequest(f"Search parameter '{code}' has different types in {self.types}",
                             expression=(code,))
        if params[0].type == "reference":  # the concrete target types of these types
            targets = frozenset().union(
                *(self.registry.targets(p, t) for p, t in zip(params, types, strict=True)))
            return replace(params[0], target=tuple(sorted(targets)))
        return params[0]

    def why_not(self, code: str) -> str:
        types = self.types or ("Resource",)
        known = [p for t in types if (p := self.registry.params_for(t).get(code.split(".")[0]))]
        if not known:
            return f"Unknown search parameter '{code}' for {', '.join(types)}"
        if "." in code:
            return f"Chained search parameters ('{code}') are not supported yet"
        if len(known) < len(types):
            return f"Search parameter '{code}' is not defined for all of {', '.join(types)}"
        return f"Search parameter '{code}' ({known[0].type}) is not supported yet"

    def unsupported(self, name: str, message: str) -> None:
        if self.strict:
            raise BadRequest(message, expression=(name,))
        self.ignored.append(name)

    # -- result parameters -------------------------------------------------------------

    def count_(self, value: str) -> None:
        self.count = min(non_negative("_count", value), self.max_count)

    def offset_(self, value: str) -> None:
        self.offset = non_negative("_offset", value)

    def sort_(self, value: str) -> None:
        keys: list[SortKey] = []
        for key in (k.strip() for k in value.split(",")):
            code = key.removeprefix("-")
            if code in SORTABLE:
                keys.append(SortKey(code, key.startswith("-")))
            elif key:
                self.unsupported(f"_sort={key}", f"Sorting by '{code}' is not supported")
        if keys:
            self.sort = tuple(keys)
            self.used.append(("_sort", ",".join(("-" if k.descending else "") + k.param
                                                for k in keys)))

    def total_(self, value: str) -> None:
        self.total = cast(Literal["none", "estimate", "accurate"], _one_of("_total", value, TOTALS))
        self.used.append(("_total", self.total))

    def summary_(self, value: str) -> None:
        self.summary = _one_of("_summary", value, SUMMARIES)
        self.used.append(("_summary", self.summary))

    def elements_(self, value: str) -> None:
        self.elements = tuple(e.strip() for e in value.split(",") if e.strip())
        if self.elements:
            self.used.append(("_elements", ",".join(self.elements)))


def non_negative(name: str, value: object) -> int:
    """`value` as an int >= 0, or a 400 naming the parameter."""
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if number < 0:
        raise BadRequest(f"{name} must be a non-negative integer, not '{value}'",
                         expression=(name,))
    return number


def _one_of(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(sorted(allowed))}, not '{value}'",
                         expression=(name,))
    return value


_RESULT_PARAMS = {
    "_count": _Parser.count_,
    "_offset": _Parser.offset_,
    "_sort": _Parser.sort_,
    "_total": _Parser.total_,
    "_summary": _Parser.summary_,
    "_elements": _Parser.elements_,
}
