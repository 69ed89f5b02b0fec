"""Reading the text of search-parameter FHIRPath expressions (not evaluating them).

The R4 expressions are unions of branches, one or more per base type
(`Patient.name | Practitioner.name`), and restrict polymorphic references with
`.where(resolve() is Patient)`, which fhirpathpy cannot evaluate (it has no `resolve()`).
"""

from __future__ import annotations

import re
from functools import cache

_RESOLVE_IS = re.compile(
    r"\.where\(\s*resolve\(\)\s+is\s+(?P<type>[A-Z][A-Za-z]+)\s*\)(?P<close>\)*)\s*$"
)
_LEAD = re.compile(r"^\(*\s*(?P<type>[A-Z][A-Za-z]+)\.(?P<elem>[a-z][A-Za-z0-9]*)")
ABSTRACT = frozenset({"Resource", "DomainResource"})
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_PATH = re.compile(r"^[A-Z]\w*\.[a-z]\w*(?:\.\w+(?:\(\))?|\[\d+\]|\s+as\s+\w+)*$")
_CALL = re.compile(r"(\w+)\(\)")
# Functions that give nothing for an empty input: a path made only of these can be skipped
# when its first element is absent. exists(), empty(), count(), `and`... cannot.
_EMPTY_PRESERVING = frozenset(
    {
        "where",
        "as",
        "ofType",
        "first",
        "last",
        "tail",
        "skip",
        "take",
        "extension",
        "select",
        "distinct",
        "single",
    }
)


def split_union(expression: str) -> list[str]:
    """The branches of a top-level `|` union (parentheses and string literals respected)."""
    branches: list[str] = []
    depth, quoted, start, i = 0, False, 0, 0
    while i < len(expression):
        char = expression[i]
        if quoted:
            if char == "\\":
                i += 1
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "|" and depth == 0:
            branches.append(expression[start:i].strip())
            start = i + 1
        i += 1
    branches.append(expression[start:].strip())
    return [b for b in branches if b]


def resolve_filter(branch: str) -> tuple[str, str | None]:
    """`X.subject.where(resolve() is Patient)` -> (`X.subject`, `Patient`); others unchanged."""
    found = _RESOLVE_IS.search(branch)
    if found is None:
        return branch, None
    return branch[: found.start()] + found["close"], found["type"]


def lead(branch: str) -> tuple[str, str, int, int] | None:
    """(type, first element, start and end of the type) of `Type.element...`, else None."""
    found = _LEAD.match(branch)
    if found is None:
        return None
    return found["type"], found["elem"], found.start("type"), found.end("type")


def branches_for(expression: str, type: str, resource_types: frozenset[str]) -> list[str]:
    """The branches that apply to `type`: its own, the Resource-level ones and untyped ones."""
    out = []
    for branch in split_union(expression):
        found = lead(branch)
        if found and found[0] not in ABSTRACT and found[0] != type and found[0] in resource_types:
            continue
        out.append(branch)
    return out


@cache
def reference_types(expression: str, type: str, resource_types: frozenset[str]) -> frozenset[str]:
    """The types `resolve() is X` restricts every branch for `type` to; empty if unrestricted."""
    only = {resolve_filter(b)[1] for b in branches_for(expression, type, resource_types)}
    if not only or None in only:
        return frozenset()
    return frozenset(t for t in only if t is not None)


def is_plain_path(text: str) -> bool:
    """Whether `text` is a path that yields nothing when its first element is absent."""
    top = _top_level(_STRING.sub("''", text)).strip()
    if not _PATH.match(top):
        return False
    return all(name in _EMPTY_PRESERVING for name in _CALL.findall(top))


def _top_level(text: str) -> str:
    """`text` without function arguments (kept as `()`) and without grouping parentheses."""
    out: list[str] = []
    stack: list[bool] = []  # per open parenthesis: is it a function call's
    for i, char in enumerate(text):
        if char == "(":
            call = i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
            if call and not any(stack):
                out.append(char)
            stack.append(call)
        elif char == ")":
            call = stack.pop() if stack else False
            if call and not any(stack):
                out.append(char)
        elif not any(stack):
            out.append(char)
    return "".join(out)
