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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from fhir_server.search.conditions import (
    AnyOf,
    Clause,
    IdCondition,
    SearchQuery,
    TokenCondition,
)
from fhir_server.search.memory import verdict
from fhir_server.search.values import (
    IndexValue,
    TokenValue,
)
from fhir_server.storage.base import StorageReader, StoredResource
from subscriptions.model import DELIVERED, Filter, Subscription

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
        # each clause is an OR of conditions, decided in memory where it can be
        verdicts = [verdict(AnyOf(tuple(c)), rec.id, values) for c in f.query.clauses]
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
