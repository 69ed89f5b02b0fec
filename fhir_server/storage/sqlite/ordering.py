"""Sorting and keyset paging: `_sort` keys as SQL, and the rows after (or before) a key.

https://hl7.org/fhir/R4/search.html#sort -- a parameter's sort value is the lowest of the
resource's values ascending and the highest descending, read with a correlated MIN/MAX
over its index table (a seek on the table's (rid, seq) key); a resource without a value
sorts last in both directions; `rid` (insertion order) breaks ties, so every order is
total and a page boundary is a key. Dates, numbers and quantities sort by their low
bound, strings by their normalized value, tokens by code, references by Type/id (else
the absolute URL), uris by the uri.

Each sort key is two ordering components, "has no value" (0 before 1) and the value; the
native columns (_id, _lastUpdated) are never empty and are one. A keyset condition is
the lexicographic "after" (or "before") on these components.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import PageKey, SearchQuery, SortKey
from fhir_server.storage.sqlite.sql import Fragment, or_

_NATIVE = {"_id": "r.id", "_lastUpdated": "r.last_updated"}
_KIND = {
    "string": ("string_idx", "value"),
    "token": ("token_idx", "code"),
    "date": ("date_idx", "low"),
    "number": ("number_idx", "low"),
    "quantity": ("quantity_idx", "low"),
    "uri": ("uri_idx", "uri"),
    "reference": ("reference_idx", "coalesce(target_type || '/' || target_id, url)"),
}


@dataclass(frozen=True, slots=True)
class _Component:
    sql: str
    descending: bool
    key_index: int  # which value of the page key it compares with
    is_flag: bool = False  # the "has no value" component of key `key_index`

    def value(self, key: tuple[Any, ...]) -> Any:
        found = key[self.key_index]
        return int(found is None) if self.is_flag else found


@dataclass(frozen=True, slots=True)
class Ordering:
    """The SELECT columns, ORDER BY and keyset conditions of one query's sort."""

    columns: Fragment  # ", k0, k1, ..., r.rid" to append to the select list
    components: tuple[_Component, ...]
    width: int  # values in a page key: one per sort key, then rid

    def order_by(self, driven: bool, reverse: bool = False) -> str:
        terms = []
        for c in self.components:
            # `+column`: when the search starts from a clause's rids, SQLite sorts those
            # few rows instead of walking the type's rows in key order.
            sql = f"+{c.sql}" if driven and c.sql.startswith("r.") else c.sql
            terms.append(f"{sql} DESC" if c.descending != reverse else sql)
        return ", ".join(terms)

    def keyset(self, page: PageKey) -> Fragment:
        """The rows strictly after `page.key` in this order (before it, `page.before`)."""
        key = tuple(page.key)
        if len(key) != self.width:
            raise BadRequest(
                "The paging key does not match this search's _sort", expression=("_page",)
            )
        branches: list[Fragment] = []
        equal: list[Fragment] = []
        for c in self.components:
            value = c.value(key)
            if value is not None:  # nothing sorts after an empty value but other empties
                op = ">" if c.descending == page.before else "<"
                branches.append(
                    (
                        " AND ".join([s for s, _ in equal] + [f"{c.sql} {op} ?"]),
                        [p for _, ps in equal for p in ps] + [value],
                    )
                )
            equal.append((f"{c.sql} IS ?", [value]))
        return or_(branches) if branches else ("0", [])


def ordering(query: SearchQuery) -> Ordering:
    columns: list[str] = []
    params: list[Any] = []
    components: list[_Component] = []
    for i, key in enumerate(query.sort):
        native = _NATIVE.get(key.param)
        if native is not None:
            columns.append(native)
            components.append(_Component(native, key.descending, i))
            continue
        sql, values = _value(key)
        alias = f"_k{i}"
        columns.append(f"{sql} AS {alias}")
        params.extend(values)
        components.append(_Component(f"({alias} IS NULL)", False, i, is_flag=True))
        components.append(_Component(alias, key.descending, i))
    columns.append("r.rid")
    components.append(_Component("r.rid", False, len(query.sort)))
    return Ordering((", " + ", ".join(columns), params), tuple(components), len(columns))


def _value(key: SortKey) -> Fragment:
    found = _KIND.get(key.kind or "")
    if found is None:
        raise BadRequest(f"Sorting by '{key.param}' is not supported", expression=("_sort",))
    table, column = found
    aggregate = "max" if key.descending else "min"
    return (
        f"(SELECT {aggregate}({column}) FROM {table} WHERE rid = r.rid AND param = ?)",
        [key.param],
    )
