"""`_filter`: the FHIR filter language, parsed into search conditions.

https://hl7.org/fhir/R4/search_filter.html -- a filter is a parameter expression
(`paramPath op value`), a logical expression of filters joined by `and` / `or`, or
`not (filter)`, with parentheses for grouping. Here `and` binds tighter than `or` (the
page gives no precedence; parenthesize to be explicit). Values are JSON-style quoted
strings, or tokens: any run of characters without whitespace or parentheses (dates,
numbers, `system|code`, references).

Each parameter expression is translated into what the same search would be as a URL
parameter, and parsed by the ordinary parser (so types, modifiers, chains `a.b` and
the access policy work the same way):

    eq ne gt lt ge le sa eb ap   the prefix, for dates, numbers and quantities
    eq                           exact match for strings, plain match for tokens,
                                 references and uris
    ne (token)                   :not
    sw / co                      string starts with (the default) / :contains
    pr true|false                :missing=false|true
    po                           date ap (the periods overlap)
    ss / sb                      token :below (the value subsumes) / :above
    in / ni                      token :in / :not-in (a value set)
    re                           reference (refers to the resource)

Other combinations (`ew`, `ne` on a string, `[...]` sub-filters on a path) are refused
with a 400 naming `_filter`, never answered with a wrong result. Logical expressions
become `AllOf`, `AnyOf` and `Not` conditions. Parentheses and `not` nest at most
`MAX_DEPTH` deep, and a filter holds at most as many comparisons as a parameter may hold
OR values: each level and each comparison is work for every engine, and recursion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from fhir_server.errors import BadRequest
from fhir_server.search.conditions import AllOf, AnyOf, Condition, Not

NAME = "_filter"
OPERATORS = frozenset(
    {
        "eq",
        "ne",
        "co",
        "sw",
        "ew",
        "gt",
        "lt",
        "ge",
        "le",
        "ap",
        "sa",
        "eb",
        "pr",
        "po",
        "ss",
        "sb",
        "in",
        "ni",
        "re",
    }
)
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()]+)')
_PREFIXED = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class Comparison:
    path: str
    op: str
    value: str


@dataclass(frozen=True, slots=True)
class Logical:
    op: str  # and | or
    parts: tuple[Expression, ...]


@dataclass(frozen=True, slots=True)
class Negation:
    part: Expression


Expression = Comparison | Logical | Negation


def _error(message: str) -> BadRequest:
    return BadRequest(f"_filter: {message}", expression=(NAME,))


def tokenize(text: str) -> list[str]:
    tokens, at = [], 0
    while at < len(text):
        if text[at:].strip() == "":
            break
        found = _TOKEN.match(text, at)
        if found is None:
            raise _error(f"cannot read '{text[at : at + 20]}'")
        tokens.append(found.group(1))
        at = found.end()
    return tokens


class _Parser:
    def __init__(self, text: str, max_comparisons: int) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.depth, self.comparisons, self.max_comparisons = 0, 0, max_comparisons

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _error("the filter ends too early")
        self.at += 1
        return token

    def expect(self, token: str) -> None:
        found = self.take()
        if found != token:
            raise _error(f"expected '{token}', found '{found}'")

    def parse(self) -> Expression:
        if not self.tokens:
            raise _error("the filter is empty")
        found = self.or_()
        if self.peek() is not None:
            raise _error(f"unexpected '{self.peek()}'")
        return found

    def or_(self) -> Expression:
        parts = [self.and_()]
        while self.peek() == "or":
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Logical("or", tuple(parts))

    def and_(self) -> Expression:
        parts = [self.unary()]
        while self.peek() == "and":
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else Logical("and", tuple(parts))

    def unary(self) -> Expression:
        token = self.peek()
        if token == "not":
            self.take()
            return Negation(self.group())
        if token == "(":
            return self.group()
        return self.comparison()

    def group(self) -> Expression:
        """`( filter )`, one level deeper."""
        self.expect("(")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error(f"parentheses and 'not' nest at most {MAX_DEPTH} levels deep")
        inner = self.or_()
        self.expect(")")
        self.depth -= 1
        return inner

    def comparison(self) -> Comparison:
        self.comparisons += 1
        if self.comparisons > self.max_comparisons:
            raise _error(f"a filter holds at most {self.max_comparisons} comparisons")
        path = self.take()
        if path in ("(", ")", "and", "or") or path.startswith('"'):
            raise _error(f"expected a parameter name, found '{path}'")
        if "[" in path:
            raise _error(f"filters inside a path ('{path}') are not supported")
        op = self.take()
        if op not in OPERATORS:
            raise _error(f"unknown operator '{op}' after '{path}'")
        value = self.take()
        if value in ("(", ")"):
            raise _error(f"expected a value after '{path} {op}'")
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                raise _error(f"bad string {value}") from None
        return Comparison(path, op, value)


def parse_filter(text: str, max_comparisons: int = 1000) -> Expression:
    """The syntax tree of a `_filter` value (BadRequest naming `_filter` when malformed)."""
    return _Parser(text, max_comparisons).parse()


Criterion = Callable[[str, str], Condition]  # (name with modifier, value) -> one condition
ParamType = Callable[[str], str | None]  # the type of the last parameter of a path


def to_condition(expression: Expression, criterion: Criterion, param_type: ParamType) -> Condition:
    """`expression` as one condition; `criterion` parses `name=value` as the URL would."""
    match expression:
        case Logical(op="and"):
            return AllOf(tuple(to_condition(p, criterion, param_type) for p in expression.parts))
        case Logical():
            return AnyOf(tuple(to_condition(p, criterion, param_type) for p in expression.parts))
        case Negation():
            return Not(to_condition(expression.part, criterion, param_type))
        case Comparison():
            name, value = _as_parameter(expression, param_type(expression.path))
            return criterion(name, value)
    raise _error("unsupported expression")


def _as_parameter(c: Comparison, kind: str | None) -> tuple[str, str]:
    """The URL parameter (name with modifier, value) that means the same as `c`."""
    if kind is None:
        raise _error(f"unknown search parameter '{c.path}'")
    if c.op == "pr":
        if c.value not in ("true", "false"):
            raise _error(f"'pr' takes true or false, not '{c.value}'")
        return f"{c.path}:missing", "false" if c.value == "true" else "true"
    if kind in ("date", "number", "quantity"):
        if c.op == "po" and kind == "date":
            return c.path, f"ap{c.value}"
        if c.op in _PREFIXED:
            return c.path, f"{c.op}{c.value}"
    elif kind == "string":
        modes = {"eq": ":exact", "sw": "", "co": ":contains"}
        if c.op in modes:
            return c.path + modes[c.op], c.value
    elif kind == "token":
        modifiers = {
            "eq": "",
            "ne": ":not",
            "ss": ":below",
            "sb": ":above",
            "in": ":in",
            "ni": ":not-in",
        }
        if c.op in modifiers:
            return c.path + modifiers[c.op], c.value
    elif kind in ("reference", "uri"):
        if c.op in ("eq", "re"):
            return c.path, c.value
        if kind == "uri" and c.op == "sw":
            return c.path + ":below", c.value
    raise _error(f"operator '{c.op}' is not supported for '{c.path}' ({kind})")
