"""Reachability in an is-a hierarchy (a DAG), answered in constant or logarithmic time.

Each concept gets a post-order number from one depth-first walk down the hierarchy; the
concepts below it in that walk's spanning tree are exactly the numbers [entry, post]. A
concept reached also through a second parent adds the intervals of that parent's other
children, merged (the interval labelling of Agrawal, Borgida and Jagadish, SIGMOD 1989).
"Is B below A" is then a range check on A's intervals, and the descendants of A are slices
of the post-order list: a tree needs one interval per concept, a tree-like DAG few more.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence

Links = Mapping[str, Sequence[str]]


class Hierarchy:
    """Post-order interval labels over the nodes, given their parents and children."""

    def __init__(self, nodes: Iterable[str], parents: Links, children: Links) -> None:
        self._children = children
        self._entry: dict[str, int] = {}
        self._post: dict[str, int] = {}
        self._order: list[str] = []
        # Nodes whose descendants are not just their spanning subtree: merged (starts, ends).
        self._extra: dict[str, tuple[list[int], list[int]]] = {}
        nodes = list(nodes)
        self._number([n for n in nodes if not parents.get(n)] + nodes)
        self._label()

    def _number(self, starts: list[str]) -> None:
        """Depth-first walk from each root (then any node a cycle left unvisited)."""
        entry, post, order, children = self._entry, self._post, self._order, self._children
        for root in starts:
            if root in entry:
                continue
            entry[root] = len(order)
            stack = [(root, iter(children.get(root, ())))]
            while stack:
                node, pending = stack[-1]
                child = next((c for c in pending if c not in entry), None)
                if child is None:
                    stack.pop()
                    post[node] = len(order)
                    order.append(node)
                    continue
                entry[child] = len(order)
                stack.append((child, iter(children.get(child, ()))))

    def _spans(self, node: str) -> list[tuple[int, int]]:
        extra = self._extra.get(node)
        if extra is None:
            return [(self._entry[node], self._post[node])]
        return list(zip(*extra, strict=True))

    def _label(self) -> None:
        """Children before parents (post-order), each node's intervals from its children's."""
        for node in self._order:
            low, high = self._entry[node], self._post[node]
            outside = [
                (a, b)
                for child in self._children.get(node, ())
                if child in self._post and self._post[child] < high  # finished: not a cycle
                for a, b in self._spans(child)
                if a < low or b > high
            ]
            if outside:
                merged = _merge([(low, high), *outside])
                self._extra[node] = ([a for a, _ in merged], [b for _, b in merged])

    def below(self, node: str, ancestor: str) -> bool:
        """True when `node` is `ancestor` or is reachable from it through children."""
        number = self._post.get(node)
        if number is None or ancestor not in self._post:
            return False
        if self._entry[ancestor] <= number <= self._post[ancestor]:
            return True
        extra = self._extra.get(ancestor)
        if extra is None:
            return False
        at = bisect_right(extra[0], number) - 1
        return at >= 0 and number <= extra[1][at]

    def descendants(self, node: str) -> list[str]:
        """`node` and every node below it."""
        if node not in self._post:
            return []
        return [n for a, b in self._spans(node) for n in self._order[a : b + 1]]


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged
