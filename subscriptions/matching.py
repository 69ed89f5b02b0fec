"""Which subscriptions a written version matches, without a database search per subscription.

The active subscriptions are grouped by resource type. Within a type, a filter with a
clause that is one token equality (`code=system|value`) is filed under that token; the
version's own token values pick the filters worth evaluating, so a thousand subscriptions
on different codes cost a few dictionary look-ups per write. A filter is then evaluated in
memory against the index values the indexer extracts for the version (only the parameters
the type's filters use). A condition that needs other resources (chains, `_has`) or that
memory does not decide is answered by a search of the written resource's `_id` with the
filter's clauses, in the writing transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from fhir_server.search.conditions import (
    Clause,
    Condition,
    DateCondition,
    IdCondition,
    MissingCondition,
    NumberCondition,
    QuantityCondition,
    ReferenceCondition,
    SearchQuery,
    StringCondition,
    TokenCondition,
    UriCondition,
    range_matches,
)
from fhir_server.search.values import (
    DateValue,
    IndexValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_server.storage.base import StorageReader, StoredResource
from subscriptions.model import DELIVERED, Filter, Subscription

Verdict = Literal["yes", "no", "unknown"]
TokenKey = tuple[str, str | None, str]  # (param, system: None any / "" none, code)
Target = tuple[str, int]  # (subscription id, index of its filter)


@dataclass(slots=True)
class _Bucket:
    """The filters of one resource type."""

    by_token: dict[TokenKey, set[Target]] = field(default_factory=dict)
    others: set[Target] = field(default_factory=set)
    params: dict[str, int] = field(default_factory=dict)  # parameter -> filters using it


class Matcher:
    """The deliverable subscriptions, indexed for matching; `put`/`drop` keep it in step."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}
        self._buckets: dict[str, _Bucket] = {}

    def put(self, sub: Subscription) -> None:
        self.drop(sub.id)
        if sub.status not in DELIVERED:
            return
        self.subscriptions[sub.id] = sub
        for n, f in enumerate(sub.filters):
            bucket = self._buckets.setdefault(f.type, _Bucket())
            key = _token_key(f.query.clauses)
            (bucket.by_token.setdefault(key, set()) if key else bucket.others).add((sub.id, n))
            for param in _params(f.query.clauses):
                bucket.params[param] = bucket.params.get(param, 0) + 1

    def drop(self, id: str) -> None:
        sub = self.subscriptions.pop(id, None)
        if sub is None:
            return
        for n, f in enumerate(sub.filters):
            bucket = self._buckets[f.type]
            key = _token_key(f.query.clauses)
            targets = bucket.by_token.get(key, set()) if key else bucket.others
            targets.discard((sub.id, n))
            if key and not targets:
                bucket.by_token.pop(key, None)
            for param in _params(f.query.clauses):
                bucket.params[param] -= 1
                if not bucket.params[param]:
                    del bucket.params[param]
            if not bucket.by_token and not bucket.others:
                del self._buckets[f.type]

    def watches(self, type: str) -> bool:
        return type in self._buckets

    def params(self, type: str) -> frozenset[str]:
        """The parameters the filters on `type` use: the index values matching needs."""
        bucket = self._buckets.get(type)
        return frozenset(bucket.params) if bucket else frozenset()

    def candidates(
        self, type: str, values: Sequence[IndexValue]
    ) -> list[tuple[Subscription, Filter]]:
        """The filters on `type` worth evaluating for a version with index `values`."""
        bucket = self._buckets.get(type)
        if bucket is None:
            return []
        targets = set(bucket.others)
        for v in values:
            if isinstance(v, TokenValue) and v.code is not None:
                for key in ((v.param, v.system or "", v.code), (v.param, None, v.code)):
                    targets.update(bucket.by_token.get(key, ()))
        found = []
        for id, n in sorted(targets):
            sub = self.subscriptions[id]
            found.append((sub, sub.filters[n]))
        return found

    async def matches(
        self, db: StorageReader, f: Filter, rec: StoredResource, values: Sequence[IndexValue]
    ) -> bool:
        """Whether version `rec` (with index `values`) matches filter `f`."""
        verdicts = [clause_verdict(c, rec, values) for c in f.query.clauses]
        if "no" in verdicts:
            return False
        if "unknown" not in verdicts:
            return True
        query = SearchQuery((rec.type,), (*f.query.clauses, (IdCondition((rec.id,)),)))
        page = await db.search(replace(query, count=1, total="none"))
        return bool(page.resources)


def _token_key(clauses: Iterable[Clause]) -> TokenKey | None:
    for clause in clauses:
        if len(clause) == 1:
            c = clause[0]
            if isinstance(c, TokenCondition) and not c.negate and c.code is not None:
                return (c.param, c.system, c.code)
    return None


def _params(clauses: Iterable[Clause]) -> set[str]:
    return {p for clause in clauses for c in clause if (p := getattr(c, "param", None))}


def clause_verdict(clause: Clause, rec: StoredResource, values: Sequence[IndexValue]) -> Verdict:
    """An OR of conditions: yes when one matches, no when none can, else unknown."""
    verdicts = [condition_verdict(c, rec, values) for c in clause]
    if "yes" in verdicts:
        return "yes"
    return "unknown" if "unknown" in verdicts else "no"


def condition_verdict(c: Condition, rec: StoredResource, values: Sequence[IndexValue]) -> Verdict:
    if isinstance(c, IdCondition):
        return _yes(rec.id in c.ids)
    if isinstance(c, MissingCondition):
        return _yes(any(v.param == c.param for v in values) != c.missing)
    if isinstance(c, TokenCondition):
        found = any(_token(c, v) for v in values if isinstance(v, TokenValue))
        return _yes(found != c.negate)
    test = _TESTS.get(type(c))
    if test is None:
        return "unknown"
    kind, check = test
    param = getattr(c, "param", None)
    return _yes(any(check(c, v) for v in values if isinstance(v, kind) and v.param == param))


def _yes(value: bool) -> Verdict:
    return "yes" if value else "no"


def _token(c: TokenCondition, v: TokenValue) -> bool:
    if v.param != c.param or (c.code is not None and v.code != c.code):
        return False
    if c.system is None:
        return True
    return (v.system is None) if c.system == "" else v.system == c.system


def _string(c: StringCondition, v: StringValue) -> bool:
    if c.mode == "exact":
        return v.exact == c.value
    return v.value.startswith(c.value) if c.mode == "start" else c.value in v.value


def _reference(c: ReferenceCondition, v: ReferenceValue) -> bool:
    if c.url is not None:
        return v.url == c.url and (c.version is None or v.version == c.version)
    return (c.target_type is None or v.target_type == c.target_type) and (
        v.target_id == c.target_id
    )


def _range(c: DateCondition | NumberCondition, v: DateValue | NumberValue) -> bool:
    return range_matches(c.prefix, c.low, c.high, v.low, v.high)


def _quantity(c: QuantityCondition, v: QuantityValue) -> bool:
    if c.code is not None and v.code != c.code:
        return False
    if c.system is not None and v.system != c.system:
        return False
    return range_matches(c.prefix, c.low, c.high, v.low, v.high)


def _uri(c: UriCondition, v: UriValue) -> bool:
    if c.mode == "eq":
        return v.uri == c.uri
    return v.uri.startswith(c.uri) if c.mode == "below" else c.uri.startswith(v.uri)


_TESTS: dict[type, tuple[type, Callable[[Any, Any], bool]]] = {
    StringCondition: (StringValue, _string),
    ReferenceCondition: (ReferenceValue, _reference),
    DateCondition: (DateValue, _range),
    NumberCondition: (NumberValue, _range),
    QuantityCondition: (QuantityValue, _quantity),
    UriCondition: (UriValue, _uri),
}
