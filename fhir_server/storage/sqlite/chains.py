"""Chaining and reverse chaining (`_has`) as nested SQL over the reference index.

https://hl7.org/fhir/R4/search.html#chaining -- `subject:Patient.name=x`: resources whose
`subject` references a Patient that matches `name=x`. The inner search is the SQL of its
own query (`_inner`): the live resources of its types that pass every clause, the first
clause that can read rids from an index driving it. A chain then reads as

    reference rows of `param` whose (target_type, target_id) is IN (inner type, id)

a seek on reference_target per inner match; `_has:Observation:subject:code=x` the other
way round: resources that the `subject` reference rows of matching Observations target.
Chains nest to any depth because an inner query may itself hold chains. Inner queries use
the alias `r` too: in SQL, each subquery's `r` is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.search.conditions import Clause, SearchQuery
from fhir_server.storage.sqlite.sql import Fragment, and_, marks, or_, union_all

MatchesOf = Callable[[Clause, bool], list[Any]]  # conditions.clause_matches


def _inner(query: SearchQuery, matches_of: MatchesOf, columns: str) -> Fragment:
    """SELECT `columns` of the live resources of `query.types` that match `query`."""
    types = list(query.types)
    base: list[Fragment] = [("r.deleted = 0", []), (f"r.type IN ({marks(len(types))})", types)]
    clauses = [matches_of(clause, False) for clause in query.clauses]
    driver = next((c for c in clauses if c and not any(m.negate for m in c)), None)
    parts = list(base)
    if driver is not None:
        sql, params = union_all([s for m in driver for s in m.selects(types)])
        parts.append((f"r.rid IN ({sql})", params))
    parts.extend(or_([m.exists() for m in clause]) for clause in clauses if clause is not driver)
    sql, params = and_(*parts)
    return (f"SELECT {columns} FROM resources r WHERE {sql}", params)


@dataclass(frozen=True, slots=True)
class ChainRids:
    """`param` references a resource that the inner query matches."""

    param: str
    query: SearchQuery
    matches_of: MatchesOf
    negate = False

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        inner, params = _inner(self.query, self.matches_of, "r.type, r.id")
        return [
            (
                f"SELECT rid FROM reference_idx WHERE type IN ({marks(len(types))}) "
                f"AND param = ? AND (target_type, target_id) IN ({inner})",
                [*types, self.param, *params],
            )
        ]

    def exists(self) -> Fragment:
        inner, params = _inner(self.query, self.matches_of, "r.type, r.id")
        return (
            f"EXISTS (SELECT 1 FROM reference_idx WHERE rid = r.rid AND param = ? "
            f"AND (target_type, target_id) IN ({inner}))",
            [self.param, *params],
        )


@dataclass(frozen=True, slots=True)
class HasRids:
    """Some resource that the inner query matches references this one through `param`."""

    param: str
    query: SearchQuery
    matches_of: MatchesOf
    negate = False

    def _sources(self) -> tuple[str, list[Any]]:
        inner, params = _inner(self.query, self.matches_of, "r.rid")
        types = list(self.query.types)
        return (
            f"ri.type IN ({marks(len(types))}) AND ri.param = ? AND ri.rid IN ({inner})",
            [*types, self.param, *params],
        )

    def selects(self, types: Sequence[str]) -> list[Fragment]:
        sources, params = self._sources()
        return [
            (
                "SELECT t.rid FROM reference_idx ri JOIN resources t "
                "ON t.type = ri.target_type AND t.id = ri.target_id "
                f"WHERE {sources} AND ri.target_type IN ({marks(len(types))})",
                [*params, *types],
            )
        ]

    def exists(self) -> Fragment:
        sources, params = self._sources()
        return (
            f"EXISTS (SELECT 1 FROM reference_idx ri WHERE {sources} "
            "AND ri.target_id = r.id AND ri.target_type = r.type)",
            params,
        )
