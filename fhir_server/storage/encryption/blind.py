"""The blind index: search on encrypted elements through keyed HMAC terms, never plaintext.

A search parameter is *encrypted* for a type when one of its expression's branches reads
an encrypted element (`Patient.name.family` under `Patient.name`). Its index values are
replaced by terms `HMAC-SHA-256(index key, kind | param | text)` (hex, 128 bits; string
terms leave the parameter out, so name, family and phonetic share theirs), and the
values of searches on it are turned into the same terms before they reach the engine:

- token (identifier, telecom, phone, email, address-use...): one term of `system|code` and
  one of the code alone, so `identifier=sys|123`, `identifier=123`, `phone=555...` and
  `:not` match exactly; the system stays plain (a URL, not about the patient). `:text`
  is lost on these parameters.
- string (name, family, given, address...): one term per prefix of the normalized value,
  up to `PREFIX_CHARS` characters (the FHIR default "starts with"; longer search values
  are cut to that length, so they may match a longer name sharing those characters), and
  one term of the text as written (`:exact`). `:contains` is lost (a 400 says so).
- date (birthdate): a term for the year, the month and the day the value falls in, so `eq`
  to a year, month or day matches as FHIR says; other prefixes (ranges) are lost (400).
- other kinds on an encrypted parameter are not indexed; searching them is a 400, and so
  is sorting by any encrypted parameter (the terms have no order).

Terms are deterministic: equal values give equal terms (that is what makes them
searchable), so someone holding the database sees which resources share a name or an
identifier, and roughly how long a name is (its number of prefix terms), never the value.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    ChainCondition,
    Condition,
    DateCondition,
    HasCondition,
    MissingCondition,
    Not,
    SearchQuery,
    StringCondition,
    TokenCondition,
    TokenSetCondition,
)
from fhir_server.search.expressions import branches_for, lead
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.values import DateValue, IndexValue, StringValue, TokenValue
from fhir_server.storage.encryption.fields import ElementPaths

PREFIX_CHARS = 32  # string prefixes indexed; longer search values are cut to this
TERM_BYTES = 16  # bytes kept of each HMAC (128 bits), written as hex
_DATE_BUCKETS = (4, 7, 10)  # year, month, day of YYYY-MM-DD...
_DAY_START, _DAY_END = "T00:00:00.000000Z", "T23:59:59.999999Z"


class BlindIndex:
    """Turns index values and search queries on encrypted parameters into HMAC terms."""

    def __init__(self, registry: SearchRegistry, paths: ElementPaths, key: bytes) -> None:
        self.registry = registry
        self.paths = paths
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._memo: dict[tuple[str, ...], str] = {}
        self._sensitive: dict[tuple[str, str], bool] = {}
        self._generation = registry.generation

    # -- which parameters ------------------------------------------------------------

    def sensitive(self, type: str, code: str) -> bool:
        """Whether parameter `code` of `type` reads an encrypted element."""
        if self._generation != self.registry.generation:
            self._sensitive.clear()
            self._generation = self.registry.generation
        key = (type, code)
        found = self._sensitive.get(key)
        if found is None:
            found = self._sensitive[key] = self._reads_encrypted(type, code.split(":")[0])
        return found

    def _reads_encrypted(self, type: str, code: str) -> bool:
        if not self.paths.of(type):
            return False
        param = self.registry.param(type, code)
        if param is None or not param.expression:
            return False
        for branch in branches_for(param.expression, type, self.registry.resource_types):
            found = lead(branch.strip().lstrip("("))
            if found is None:
                continue
            text = branch.strip().lstrip("(")[found[2] :]
            steps = [found[1]]
            for part in text.split(".")[2:]:
                name = part.split("(")[0].split(" ")[0]
                if not name.isidentifier() or "(" in part:
                    break
                steps.append(name)
            if self.paths.covers(type, tuple(steps)):
                return True
        return False

    # -- index values ----------------------------------------------------------------

    def term(self, kind: str, param: str, *parts: str) -> str:
        """The term of `parts`; string terms leave `param` out ("") so the parameters that
        index the same text (name, family, phonetic) share them (computed once per write)."""
        key = (kind, param, *parts)
        found = self._memo.get(key)
        if found is not None:
            return found
        mac = self._mac.copy()  # the key's pads hashed once, not per term
        mac.update("\0".join((kind, param, *parts)).encode())
        found = self._memo[key] = mac.digest()[:TERM_BYTES].hex()
        return found

    def index(self, type: str, values: Iterable[IndexValue]) -> list[IndexValue]:
        """`values` with those of encrypted parameters replaced by their terms."""
        out: list[IndexValue] = []
        self._memo.clear()  # per write: terms of texts indexed by several parameters
        for value in values:
            if not self.sensitive(type, value.param):
                out.append(value)
            elif isinstance(value, StringValue):
                out += self._string_terms(value)
            elif isinstance(value, TokenValue):
                out += self._token_terms(value)
            elif isinstance(value, DateValue):
                out += self._date_terms(value)
            # any other kind of an encrypted parameter is left out (never stored plain)
        return list(dict.fromkeys(out))

    def _string_terms(self, value: StringValue) -> list[IndexValue]:
        p = value.param
        exact = self.term("x", "", value.exact)
        terms: list[IndexValue] = [StringValue(p, exact, exact)]
        text = value.value
        for n in range(1, min(len(text), PREFIX_CHARS) + 1):
            term = self.term("s", "", text[:n])
            terms.append(StringValue(p, term, term))
        return terms

    def _token_terms(self, value: TokenValue) -> list[IndexValue]:
        if value.code is None:
            return [TokenValue(value.param, value.system, None)]
        p = value.param
        return [
            TokenValue(p, value.system, self.term("t", p, value.system or "", value.code)),
            TokenValue(p, value.system, self.term("t*", p, value.code)),
        ]

    def _date_terms(self, value: DateValue) -> list[IndexValue]:
        terms: list[IndexValue] = []
        for n in _DATE_BUCKETS:
            if value.low[:n] == value.high[:n]:
                term = "#" + self.term("d", value.param, value.low[:n])
                terms.append(DateValue(value.param, term, term))
        return terms

    # -- search queries --------------------------------------------------------------

    def query(self, query: SearchQuery) -> SearchQuery:
        """`query` with conditions on encrypted parameters turned into terms (any depth)."""
        self._memo.clear()  # bounded: the memo only lives for one call
        types = query.types or tuple(sorted(self.registry.resource_types))
        for key in query.sort:
            if key.kind is not None and any(self.sensitive(t, key.param) for t in types):
                raise _lost(key.param, "sorting by it")
        clauses = tuple(
            tuple(self._condition(types, c) for c in clause) for clause in query.clauses
        )
        return replace(query, clauses=clauses)

    def _condition(self, types: tuple[str, ...], c: Condition) -> Condition:
        match c:
            case ChainCondition() | HasCondition():
                return replace(c, query=self.query(c.query))
            case AllOf() | AnyOf():
                return replace(c, conditions=tuple(self._condition(types, x) for x in c.conditions))
            case Not():
                return Not(self._condition(types, c.condition))
            case MissingCondition():
                return c
        param = getattr(c, "param", None)
        if not isinstance(param, str):
            return c
        code = param.split(":")[0]  # identifier:of-type is indexed under its own name
        flags = [self.sensitive(t, param) for t in types if self.registry.param(t, code)]
        if not any(flags):
            return c
        blind = self._blind(c)
        return blind if all(flags) else AnyOf((c, blind))  # plain types match the plain value

    def _blind(self, c: Condition) -> Condition:
        match c:
            case StringCondition(mode="exact"):
                return replace(c, value=self.term("x", "", c.value))
            case StringCondition(mode="start"):
                return replace(c, value=self.term("s", "", c.value[:PREFIX_CHARS]))
            case StringCondition():
                raise _lost(c.param, ":contains")
            case TokenCondition(code=str(code), system=None):
                return replace(c, code=self.term("t*", c.param, code))
            case TokenCondition(code=str(code), system=str(system)):
                return replace(c, code=self.term("t", c.param, system, code))
            case TokenCondition():
                return c  # system only: the system is kept plain
            case TokenSetCondition():
                codes = frozenset((s, self.term("t", c.param, s, v)) for s, v in c.codes)
                return replace(c, codes=codes)
            case DateCondition() if c.prefix == "eq":
                bucket = _bucket(c.low, c.high)
                if bucket is None:
                    raise _lost(c.param, "a value finer than a day")
                term = "#" + self.term("d", c.param, bucket)
                return replace(c, low=term, high=term)
            case DateCondition():
                raise _lost(c.param, f"the prefix '{c.prefix}' (a date range)")
        raise _lost(_param_of(c), "this kind of search")


def _param_of(c: Any) -> str:
    return str(getattr(c, "param", "?"))


def _lost(param: str, what: str) -> BadRequest:
    return BadRequest(
        f"'{param}' is encrypted at rest on this server: {what} is not available on it "
        "(exact and prefix matches, tokens and dates to the day, month or year are)",
        expression=(param,),
    )


def _bucket(low: str, high: str) -> str | None:
    """The year, month or day that [low, high] is exactly, or None."""
    if not (low.endswith(_DAY_START) and high.endswith(_DAY_END)):
        return None
    if low[:10] == high[:10]:
        return low[:10]
    if low[:7] == high[:7] and low[8:10] == "01":
        last = calendar.monthrange(int(low[:4]), int(low[5:7]))[1]
        return low[:7] if int(high[8:10]) == last else None
    if low[:4] == high[:4] and low[5:10] == "01-01" and high[5:10] == "12-31":
        return low[:4]
    return None
