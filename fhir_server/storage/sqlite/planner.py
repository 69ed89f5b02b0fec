"""Search planning: where a search starts, and the one query on `resources r` it runs.

Each OR-clause of the query either drives the search, as `r.rid IN (SELECT rid FROM
<kind>_idx ...)`, or filters the rows the search starts from, as `EXISTS (SELECT 1 FROM
<kind>_idx WHERE rid = r.rid ...)`; `_plan` chooses from how many rows each clause holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_server.search.conditions import Clause, SearchQuery
from fhir_server.storage.base import Page, StoredResource
from fhir_server.storage.sqlite.conditions import Matches, clause_matches, index_only
from fhir_server.storage.sqlite.ordering import ordering
from fhir_server.storage.sqlite.reads import R_RECORD, all_types, record
from fhir_server.storage.sqlite.sql import (
    Fragment,
    and_,
    fetch_all,
    fetch_one,
    marks,
    or_,
    union_all,
)


@dataclass(frozen=True, slots=True)
class _Clause:
    """One OR-clause; unless it has a negation, it can also be read as rids from indexes."""

    conditions: tuple[Matches, ...]
    types: tuple[str, ...]

    @property
    def can_drive(self) -> bool:
        """Whether the search can start from this clause's rids."""
        return bool(self.conditions) and not any(c.negate for c in self.conditions)

    def rids(self) -> Fragment:
        return union_all([select for c in self.conditions for select in c.selects(self.types)])

    def driving(self) -> Fragment:
        """`r.rid IN (...)`: SQLite reads the index ranges, then the rows by rid."""
        sql, params = self.rids()
        return (f"r.rid IN ({sql})", params)

    def filtering(self) -> Fragment:
        """A test of row r, without reading the index ranges (the search starts elsewhere)."""
        return or_([c.exists() for c in self.conditions])


def _clause(clause: Clause, types: Sequence[str], by_updated: bool) -> _Clause:
    return _Clause(tuple(clause_matches(clause, by_updated)), tuple(types))


@dataclass(frozen=True, slots=True)
class _Plan:
    """WHERE clauses for the page and for the total; `driven`: the page starts from rids."""

    page: Fragment
    count: Fragment
    driven: bool
    empty: bool = False
    count_rids: Fragment | None = None  # the total from the index alone (see `_plan`)


def _plan(conn: sqlite3.Connection, query: SearchQuery, probe_limit: int) -> _Plan:
    """Choose where the search starts, from how many rows each clause's index ranges hold.

    SQLite has no statistics on our values (gender=female matches half the patients,
    identifier=X one), so we count up to `probe_limit` index rows per clause. The search
    starts from the smallest clause and tests the others on its rows. When even that one
    is large, the page walks the rows in result order and tests every clause, stopping
    after `count` matches, instead of reading and sorting all the matches first.
    """
    base: list[Fragment] = [("r.deleted = 0", [])]
    if query.types:
        base.append((f"r.type IN ({marks(len(query.types))})", list(query.types)))
    types = list(query.types) if query.types else all_types(conn)
    by_updated = bool(query.sort) and query.sort[0].param == "_lastUpdated"
    clauses = [_clause(clause, types, by_updated) for clause in query.clauses]
    walk = and_(*base, *(c.filtering() for c in clauses))
    drivers = [c for c in clauses if c.can_drive]
    if not drivers:
        return _Plan(walk, walk, driven=False)
    sizes = [_probe(conn, c, max(probe_limit, 1)) for c in drivers]
    if min(sizes) == 0:
        return _Plan(walk, walk, driven=False, empty=True)
    best = drivers[sizes.index(min(sizes))]
    start = and_(*base, best.driving(), *(c.filtering() for c in clauses if c is not best))
    # One clause of plain index conditions: the index rows are those of live resources of
    # these types, so the total is their distinct rids, without reading the resources
    count_rids = (
        best.rids() if len(clauses) == 1 and all(index_only(c) for c in best.conditions) else None
    )
    if min(sizes) < probe_limit:
        return _Plan(start, start, driven=True, count_rids=count_rids)
    return _Plan(walk, start, driven=False, count_rids=count_rids)


def _probe(conn: sqlite3.Connection, clause: _Clause, limit: int) -> int:
    """The clause's index rows, counted up to `limit`."""
    sql, params = clause.rids()
    return int(fetch_one(conn, f"SELECT count(*) FROM ({sql} LIMIT ?)", [*params, limit])[0])


def search(conn: sqlite3.Connection, query: SearchQuery, probe_limit: int) -> Page:
    plan = _plan(conn, query, probe_limit)
    if plan.empty:
        return Page([], None if query.total == "none" else 0)
    resources: list[StoredResource] = []
    keys: list[tuple[Any, ...]] = []
    if query.count > 0:
        resources, keys = _page(conn, query, plan)
    total = None
    if query.total != "none":  # an estimate is the exact count too: the same index ranges
        if not query.clauses:
            total = _live(conn, query.types)
        elif plan.count_rids is not None:
            sql, params = plan.count_rids
            total = fetch_one(conn, f"SELECT count(DISTINCT rid) FROM ({sql})", params)[0]
        else:
            sql, params = plan.count
            total = fetch_one(conn, f"SELECT count(*) FROM resources r WHERE {sql}", params)[0]
    return Page(resources, total, keys)


def _live(conn: sqlite3.Connection, types: Sequence[str]) -> int:
    """How many live resources `types` (all: every type) have, from `type_counts`."""
    where = f" WHERE type IN ({marks(len(types))})" if types else ""
    return int(
        fetch_one(conn, f"SELECT coalesce(sum(live), 0) FROM type_counts{where}", list(types))[0]
    )


def _page(
    conn: sqlite3.Connection, query: SearchQuery, plan: _Plan
) -> tuple[list[StoredResource], list[tuple[Any, ...]]]:
    """The page's rows and their sort keys; a page before a key is read backwards."""
    order = ordering(query)
    columns, column_params = order.columns
    where = and_(plan.page, order.keyset(query.page) if query.page else ("", []))
    backwards = query.page is not None and query.page.before
    select = (
        f"SELECT {R_RECORD}{columns} FROM resources r WHERE {where[0]} "
        f"ORDER BY {order.order_by(plan.driven, reverse=backwards)} LIMIT ? OFFSET ?"
    )
    rows = fetch_all(conn, select, [*column_params, *where[1], query.count, query.offset])
    if backwards:
        rows.reverse()
    width = len(R_RECORD.split(","))
    return [record(row[:width]) for row in rows], [tuple(row[width:]) for row in rows]
