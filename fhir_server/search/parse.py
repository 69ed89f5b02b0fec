"""Parsing a FHIR search: URL parameters into a `SearchQuery` plus the result options.

https://hl7.org/fhir/R4/search.html -- a repeated parameter is an AND ("the search
criteria are joined by AND"), a comma inside one value an OR. Parameter names may carry a
modifier (`name:exact`, `code:not`, `subject:Patient`, `any:missing`). Result parameters:
`_count`, `_offset`, `_sort`, `_total`, `_summary`, `_elements`.

A search beyond the bounds of `limits.SearchLimits` (its size, the number of `_sort` keys,
`_include`s or OR values) is refused with a 400 naming the parameter, before it runs.

"Servers SHALL ignore unknown or unsupported parameters" unless the client asked for
strict handling (`Prefer: handling=strict`), when they are an error: under `strict` an
unknown parameter, modifier or sort key is a `BadRequest`, otherwise it is listed in
`ignored`. A malformed value (a date that is not a date) is always a `BadRequest`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from fhir_server.errors import BadRequest
from fhir_server.parameters import (
    HTTP_ONLY,
    bad_token,
    decode_token,
    encode_token,
    is_key,
    non_negative,
)
from fhir_server.search.conditions import (
    AnyOf,
    ChainCondition,
    Clause,
    Condition,
    HasCondition,
    IdCondition,
    LastUpdatedCondition,
    MissingCondition,
    PageKey,
    SearchQuery,
    SortKey,
)
from fhir_server.search.dates import parse_instant_range
from fhir_server.search.filter import parse_filter, to_condition
from fhir_server.search.includes import Include, parse_include
from fhir_server.search.limits import (
    DEFAULT_LIMITS,
    SearchLimits,
    check_size,
    check_values,
    too_much,
)
from fhir_server.search.registry import SearchParam, SearchRegistry
from fhir_server.search.types import TYPES, ParseContext, accepts
from fhir_server.search.types.common import CodeLookup, bad_value, split_escaped, split_prefix

DEFAULT_COUNT = 20
NOT_SEARCH = HTTP_ONLY | {"_type"}  # handled by the HTTP layer or the caller
SORTABLE = frozenset({"_id", "_lastUpdated"})  # plus parameters of SORT_KINDS
SORT_KINDS = frozenset({"string", "token", "date", "number", "quantity", "reference", "uri"})
SUMMARIES = frozenset({"true", "text", "data", "count", "false"})
TOTALS = frozenset({"none", "estimate", "accurate"})
MAX_CHAIN_DEPTH = 4
INCLUDES = frozenset({"_include", "_revinclude"})
CONTAINED_DEFAULTS = {"_contained": "false", "_containedType": "container"}

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
    includes: tuple[Include, ...] = ()  # _include and _revinclude, in request order


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
    limits: SearchLimits = DEFAULT_LIMITS,
) -> ParsedSearch:
    """Parse `params` for a search of `types` (empty: all types, Resource-level parameters).

    `base` is the server's base URL: absolute references under it are matched as local.
    """
    check_size(params, limits)
    parser = _Parser(
        registry, types, strict, max_count, ParseContext(registry, base, codes), limits
    )
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
        limits: SearchLimits,
    ) -> None:
        self.registry, self.types, self.strict = registry, types, strict
        self.max_count, self.ctx, self.limits = max_count, ctx, limits
        self.clauses: list[Clause] = []
        self.used: list[tuple[str, str]] = []
        self.ignored: list[str] = []
        self.sort: tuple[SortKey, ...] = ()
        self.count, self.offset = DEFAULT_COUNT, 0
        self.total: Literal["none", "estimate", "accurate"] = "accurate"
        self.summary: str | None = None
        self.elements: tuple[str, ...] = ()
        self.depth = 0  # inside how many chains or _has this parser works
        self.page: tuple[str, PageKey] | None = None  # (the sort it was made for, key)
        self.includes: list[Include] = []

    def result(self) -> ParsedSearch:
        count, total = self.count, self.total
        if self.summary == "count":
            count, total = 0, "accurate"
        page = None
        if self.page is not None:
            if self.page[0] != sort_signature(self.sort):
                raise BadRequest("_page was made for another _sort", expression=("_page",))
            page = self.page[1]
        query = SearchQuery(
            self.types, tuple(self.clauses), self.sort, count, self.offset, total, page
        )
        return ParsedSearch(
            query, self.used, self.ignored, self.summary, self.elements, tuple(self.includes)
        )

    def add(self, name: str, value: str) -> None:
        if name in NOT_SEARCH:
            return
        handler = _RESULT_PARAMS.get(name)
        if name.partition(":")[0] in INCLUDES:
            self.include(name, value)
        elif name in CONTAINED_DEFAULTS:
            # Contained resources are not searched: only the default is supported.
            if value.strip() != CONTAINED_DEFAULTS[name]:
                self.unsupported(
                    name, f"{name}={value} is not supported (only {CONTAINED_DEFAULTS[name]})"
                )
        elif handler is not None:
            handler(self, value.strip())
        elif value.strip():  # "name=" is no criterion at all
            self.criterion(name, value)

    # -- search criteria ---------------------------------------------------------------

    def criterion(self, name: str, value: str) -> None:
        code, _, modifier = name.partition(":")
        if code == "_filter" and not modifier:
            self.filter(name, value)
        elif code == "_has":
            self.reverse_chain(name, value)
        elif "." in name:
            self.chain(name, value)
        elif code == "_id":
            self.special(name, value, modifier, self.ids)
        elif code == "_lastUpdated":
            self.special(name, value, modifier, self.last_updated)
        elif code == "_list" and "_list" not in self.registry.params_for("Resource"):
            self.special(name, value, modifier, self.list_)
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
                parts = self.values(name, split_escaped(value, ","))
                self.clause(
                    name, value, [kind.parse(param, modifier or None, v, self.ctx) for v in parts]
                )

    # -- chaining and reverse chaining ----------------------------------------------------

    def inner(
        self, outer: str, types: tuple[str, ...], name: str, value: str
    ) -> tuple[Clause, ...] | None:
        """`name=value` parsed as a search of `types`; None when (leniently) not supported.

        An error inside names the whole parameter (`outer`), as the client wrote it."""
        if self.depth >= MAX_CHAIN_DEPTH:
            raise BadRequest(
                f"Chains and _has nest at most {MAX_CHAIN_DEPTH} levels deep", expression=(name,)
            )
        parser = _Parser(self.registry, types, self.strict, self.max_count, self.ctx, self.limits)
        parser.depth = self.depth + 1
        try:
            parser.criterion(name, value)
        except BadRequest as error:
            if error.issues[0].expression == (outer,):
                raise
            raise BadRequest(f"{outer}: {error.diagnostics}", expression=(outer,)) from None
        return None if parser.ignored else tuple(parser.clauses)

    def chain(self, name: str, value: str) -> None:
        """`subject:Patient.general-practitioner.name=x`: https://hl7.org/fhir/R4/search.html#chaining"""
        link, _, rest = name.partition(".")
        code, _, type_ = link.partition(":")
        param = self.param(code)
        if param is None or param.type != "reference":
            self.unsupported(
                name,
                f"'{code}' in the chain '{name}' is not a reference "
                f"parameter of {', '.join(self.types or ('Resource',))}",
            )
            return
        targets = sorted(self.registry.targets(param))
        if type_:
            if type_ not in targets:
                raise BadRequest(f"'{type_}' is not a target type of '{code}'", expression=(name,))
            targets = [type_]
        next_code = rest.partition(".")[0].partition(":")[0]
        if next_code != "_has":
            targets = [
                t
                for t in targets
                if next_code in ("_id", "_lastUpdated") or next_code in self.registry.params_for(t)
            ]
        if not targets:
            self.unsupported(
                name, f"No target type of '{code}' has a search parameter '{next_code}'"
            )
            return
        inner = self.inner(name, tuple(targets), rest, value)
        if inner is None:
            self.unsupported(name, f"The chain '{name}' is not supported")
        elif inner:
            query = SearchQuery(tuple(targets), inner, count=0)
            self.clause(name, value, [ChainCondition(param.code, query)])

    def reverse_chain(self, name: str, value: str) -> None:
        """`_has:Observation:patient:code=x`: https://hl7.org/fhir/R4/search.html#has"""
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise BadRequest(
                f"'{name}' must read _has:[type]:[reference parameter]:[parameter]",
                expression=(name,),
            )
        _, type_, code, rest = parts
        if type_ not in self.registry.resource_types:
            raise BadRequest(f"Unknown resource type '{type_}' in '{name}'", expression=(name,))
        param = self.registry.params_for(type_).get(code)
        if param is None or param.type != "reference":
            self.unsupported(name, f"'{code}' is not a reference parameter of {type_}")
            return
        targets = self.registry.targets(param, type_)
        searched = self.types or tuple(sorted(self.registry.resource_types))
        if not any(t in targets for t in searched):
            self.unsupported(name, f"{type_}.{code} cannot refer to {', '.join(searched)}")
            return
        inner = self.inner(name, (type_,), rest, value)
        if inner is None:
            self.unsupported(name, f"The reverse chain '{name}' is not supported")
        elif inner:
            query = SearchQuery((type_,), inner, count=0)
            self.clause(name, value, [HasCondition(param.code, query)])

    def filter(self, name: str, value: str) -> None:
        """`_filter`: https://hl7.org/fhir/R4/search_filter.html, see `filter.py`."""

        def criterion(param: str, text: str) -> Condition:
            parser = _Parser(self.registry, self.types, True, self.max_count, self.ctx, self.limits)
            parser.depth = self.depth
            try:
                parser.criterion(param, text.replace("\\", "\\\\").replace(",", "\\,"))
            except BadRequest as error:
                if error.issues[0].expression == (name,):
                    raise
                raise BadRequest(f"{name}: {error.diagnostics}", expression=(name,)) from None
            if len(parser.clauses) != 1:
                raise BadRequest(f"_filter: '{param}' has no value", expression=(name,))
            clause = parser.clauses[0]
            return clause[0] if len(clause) == 1 else AnyOf(clause)

        condition = to_condition(
            parse_filter(value, self.limits.max_or_values), criterion, self.param_type
        )
        self.clause(name, value, [condition])

    def param_type(self, path: str) -> str | None:
        """The type of the last parameter of a (possibly chained) path, for `_filter`."""
        code = path.rsplit(".", 1)[-1].partition(":")[0]
        if code in ("_id", "_lastUpdated"):
            return "token" if code == "_id" else "date"
        types = self.types if "." not in path else tuple(sorted(self.registry.resource_types))
        kinds = {
            p.type
            for t in types or ("Resource",)
            if (p := self.registry.params_for(t).get(code)) is not None
        }
        return kinds.pop() if len(kinds) == 1 else None

    def special(self, name: str, value: str, modifier: str, build: _Build) -> None:
        if modifier:
            self.unsupported(name, f"Modifier ':{modifier}' is not supported for '{name}'")
        else:
            self.clause(name, value, build(name, value))

    def clause(self, name: str, value: str, conditions: list[Condition]) -> None:
        if len(self.clauses) >= self.limits.max_criteria:
            raise too_much(
                name,
                f"A search takes at most {self.limits.max_criteria} criteria "
                "(parameters other than _sort, _count, _include...)",
            )
        if conditions:
            self.clauses.append(tuple(conditions))
            self.used.append((name, value))

    def values(self, name: str, parts: list[str]) -> list[str]:
        """The OR values of `name` (empty ones dropped), within the limits."""
        return check_values(name, [p for p in parts if p.strip()], self.limits)

    def ids(self, name: str, value: str) -> list[Condition]:
        ids = tuple(v.strip() for v in self.values(name, value.split(",")))
        return [IdCondition(ids)] if ids else []

    def list_(self, name: str, value: str) -> list[Condition]:
        """`_list=ID`: the resources List/ID refers to in `entry.item` (List's `item`), as
        `_has:List:item:_id=ID`. https://hl7.org/fhir/R4/search.html#list -- functional
        lists (`$current-problems`) are not known here: they match nothing."""
        ids = tuple(v.strip() for v in self.values(name, value.split(",")))
        query = SearchQuery(("List",), ((IdCondition(ids),),), count=0)
        return [HasCondition("item", query)] if ids else []

    def last_updated(self, name: str, value: str) -> list[Condition]:
        out: list[Condition] = []
        check_values(name, value.split(","), self.limits)
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
            raise BadRequest(
                f"Search parameter '{code}' has different types in {self.types}", expression=(code,)
            )
        if params[0].type == "reference":  # the concrete target types of these types
            targets = frozenset().union(
                *(self.registry.targets(p, t) for p, t in zip(params, types, strict=True))
            )
            return replace(params[0], target=tuple(sorted(targets)))
        return params[0]

    def why_not(self, code: str) -> str:
        types = self.types or ("Resource",)
        known = [p for t in types if (p := self.registry.params_for(t).get(code.split(".")[0]))]
        if not known:
            return f"Unknown search parameter '{code}' for {', '.join(types)}"
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
        written = [k for k in value.split(",") if k.strip()]
        if len(written) > self.limits.max_sort_keys:
            raise too_much(
                "_sort",
                f"_sort has {len(written)} keys: at most {self.limits.max_sort_keys} are accepted",
            )
        keys: list[SortKey] = []
        for key in (k.strip() for k in value.split(",")):
            code = key.removeprefix("-")
            param = None if code in SORTABLE or not code else self.param(code)
            if code in SORTABLE:
                keys.append(SortKey(code, key.startswith("-")))
            elif param is not None and param.type in SORT_KINDS:
                keys.append(SortKey(code, key.startswith("-"), param.type))
            elif key:
                self.unsupported(f"_sort={key}", f"Sorting by '{code}' is not supported")
        if keys:
            self.sort = tuple(keys)
            self.used.append(("_sort", sort_signature(self.sort)))

    def page_(self, value: str) -> None:
        data = decode_token(value)
        signature, key = data.get("s"), data.get("k")
        if not isinstance(signature, str) or "b" not in data or not is_key(key):
            raise bad_token()
        self.page = (signature, PageKey(tuple(key), bool(data["b"])))

    def include(self, name: str, value: str) -> None:
        if len(self.includes) >= self.limits.max_includes:
            raise too_much(
                name,
                f"At most {self.limits.max_includes} _include and "
                "_revinclude parameters are accepted in one search",
            )
        found = parse_include(self.registry, name, value)
        if isinstance(found, str):
            self.unsupported(name, found)
        else:
            self.includes.append(found)
            self.used.append((name, found.text))

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


def sort_signature(sort: tuple[SortKey, ...]) -> str:
    """`_sort` as written in links: `-date,name`."""
    return ",".join(("-" if k.descending else "") + k.param for k in sort)


def page_token(sort: tuple[SortKey, ...], key: tuple[Any, ...], before: bool) -> str:
    """The `_page` value that continues a search after (or before) a page key: opaque to
    clients, bound to the sort it was made for."""
    return encode_token({"s": sort_signature(sort), "b": before, "k": list(key)})


def _one_of(name: str, value: str, allowed: frozenset[str]) -> str:
    if value not in allowed:
        raise BadRequest(
            f"{name} must be one of {', '.join(sorted(allowed))}, not '{value}'", expression=(name,)
        )
    return value


_RESULT_PARAMS = {
    "_count": _Parser.count_,
    "_offset": _Parser.offset_,
    "_sort": _Parser.sort_,
    "_page": _Parser.page_,
    "_total": _Parser.total_,
    "_summary": _Parser.summary_,
    "_elements": _Parser.elements_,
}
