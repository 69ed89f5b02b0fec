"""Hypothesis strategies that turn valid FHIR seeds into hostile requests, for the fuzz test.

Seeds are the official R4 examples committed under `tests/vectors/fuzz/` (plus, when the
examples package sits beside the checkout, every small Patient, Observation, Encounter and
Condition example and the transaction and batch Bundles). `mutated(seed)` applies a few
mutations at random places: a key dropped, duplicated or renamed, a value of another JSON
type, numbers and strings no parser likes, deep (bounded) nesting, empty containers, a wrong
`resourceType`, an invalid `id`. Values JSON cannot hold as Python data (`1e400`, `-0`, an
unpaired surrogate escape, a repeated key) are `Raw` tokens and `Pairs`, which `encode()`
writes as they are.

`search_query(registry, type)` draws query parameters from the type's registry entry with
modifiers, prefixes and values of every kind, plus the result parameters.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from fhir_server.search.registry import SearchRegistry

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "fuzz"
EXAMPLES = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "hl7.fhir.r4.examples"
    / "hl7.fhir.r4.examples-4.0.1.tgz"
)
SEED_TYPES = ("Patient", "Observation", "Encounter", "Condition")
MAX_EXAMPLE_BYTES = 6000  # larger official examples slow every request without finding more
MAX_DEPTH = 120  # past the server's nesting limit (64), so that too deep is tried too


@dataclass(frozen=True)
class Raw:
    """A JSON token written verbatim (`1e400`, `-0`, `"\\ud800"`)."""

    text: str


@dataclass(frozen=True)
class Long:
    """A string of `count` times `char`, short to print in a failing example."""

    char: str
    count: int


@dataclass(frozen=True)
class Pairs:
    """A JSON object written with its keys in this order, repeats included."""

    items: tuple[tuple[str, Any], ...]


def encode(value: Any) -> bytes:
    """JSON bytes for data that may hold `Raw` tokens and `Pairs` objects."""
    out = io.StringIO()
    _write(out, value)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _write(out: io.StringIO, value: Any) -> None:
    if isinstance(value, Raw):
        out.write(value.text)
    elif isinstance(value, Long):
        out.write(json.dumps(value.char * value.count))
    elif isinstance(value, dict | Pairs):
        items = value.items if isinstance(value, Pairs) else tuple(value.items())
        out.write("{")
        for n, (key, item) in enumerate(items):
            out.write("," if n else "")
            out.write(json.dumps(key))
            out.write(":")
            _write(out, item)
        out.write("}")
    elif isinstance(value, list):
        out.write("[")
        for n, item in enumerate(value):
            out.write("," if n else "")
            _write(out, item)
        out.write("]")
    else:
        out.write(json.dumps(value))


# -- seeds ----------------------------------------------------------------------------------


def load_seeds() -> dict[str, list[dict[str, Any]]]:
    """Seed resources by kind: each of SEED_TYPES, "transaction" and "batch"."""
    seeds: dict[str, list[dict[str, Any]]] = {
        kind: [] for kind in (*SEED_TYPES, "transaction", "batch")
    }
    documents = [json.loads(path.read_bytes()) for path in sorted(VECTORS.glob("*.json"))]
    documents += list(_official_examples())
    seen: set[str] = set()
    for document in documents:
        key = json.dumps(document, sort_keys=True)
        kind = (
            document.get("type")
            if document["resourceType"] == "Bundle"
            else document["resourceType"]
        )
        if key not in seen and kind in seeds:
            seen.add(key)
            seeds[kind].append(document)
    return seeds


def _official_examples() -> Iterator[dict[str, Any]]:
    """Small examples of the seed types from the R4 examples package, when it is present."""
    if not EXAMPLES.is_file():
        return
    with tarfile.open(EXAMPLES) as archive:
        for member in archive:
            name = member.name.rpartition("/")[2]
            wanted = name.startswith(tuple(f"{t}-" for t in (*SEED_TYPES, "Bundle")))
            if not wanted or member.size > MAX_EXAMPLE_BYTES * (4 if "Bundle" in name else 1):
                continue
            file = archive.extractfile(member)
            if file is not None:
                document = json.loads(file.read())
                if document.get("resourceType") != "Bundle" or document.get("type") in (
                    "transaction",
                    "batch",
                ):
                    yield document


# -- odd values -----------------------------------------------------------------------------

ODD_NUMBERS = [
    Raw("1e400"),
    Raw("-1e400"),
    Raw("-0"),
    Raw("-0.0"),
    Raw("1e-400"),
    Raw("0.0000000000000000000000001"),
    Raw("1E+2"),
    Raw("123456789012345678901.5"),
    Raw("1.50"),
    2**64,
    2**63,
    -(2**63) - 1,
    2**31,
    -1,
    0,
    1,
]
ODD_STRINGS = [
    "",
    " ",
    "\t\n",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "é",
    "名前",
    "\U0001f600",
    "a\u0301",
    "\x01\x1f",
    "x\x7f",
    "\u2028\u2029",
    "<div>",
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "$where",
    '{"$gt": ""}',
    "%00",
    "../../etc/passwd",
    "${jndi:x}",
    "{{7*7}}",
    "2020-13-45",
    "2020-02-30T25:61:00Z",
    "0000-00-00",
    "9999-12-31T23:59:59.999999999+14:00",
    "1e999",
    "NaN",
    "Infinity",
    "-0",
    "urn:uuid:",
    "urn:uuid:not-a-uuid",
    "#",
    "#missing",
    "Patient/",
    "Patient/../x",
    "Patient?identifier=nope",
    "http://[::1",
    "a" * 70,
]
LONG_STRINGS = [Long("x", 100_000), Long("\u00e9", 30_000), Long(" ", 10_000)]
# Strings a FHIR primitive may well accept, so that they reach storage and the index.
SAME_TYPE_STRINGS = [
    "2024",
    "2024-05",
    "2024-05-01T10:00:00+14:00",
    "0001-01-01",
    "9999-12-31",
    "2024-05-01T10:00:00.123456789Z",
    "1",
    "0",
    "-0",
    "true",
    "http://loinc.org",
    "urn:uuid:5f1a2b7e-0c4d-4e8f-9a1b-2c3d4e5f6a70",
    "Patient/example",
    "Patient/example/_history/1",
    "#p1",
    "a|b",
    "a,b",
    "a\\b",
    "a$b",
    "ÄÖÜß",
    "ǅ",
    "İ",
    "ﬃ",
    "\u0130",
    "Zürich",
]
# Unpaired surrogates cannot be Python str for every JSON library: sent as escapes.
SURROGATES = [Raw('"\\ud800"'), Raw('"\\udfff x"'), Raw('"a\\ud83d"'), Raw('"\\u0000"')]
INVALID_IDS = [
    "",
    " ",
    "a b",
    "a/b",
    "a" * 65,
    "é",
    "..",
    "x?y",
    "x#y",
    "%2F",
    "-",
    "a" * 64 + "b",
    "ÿ",
    "\t",
]
KEY_NAMES = [
    "resourceType",
    "id",
    "meta",
    "text",
    "extension",
    "modifierExtension",
    "contained",
    "identifier",
    "value",
    "valueString",
    "valueQuantity",
    "reference",
    "system",
    "code",
    "coding",
    "url",
    "fhir_comments",
    "",
    " ",
    "_id",
    "$ref",
    "__proto__",
    "entry",
    "request",
    "resource",
    "fullUrl",
    "status",
    "subject",
]
RESOURCE_TYPES = [
    "Patient",
    "Observation",
    "Encounter",
    "Condition",
    "Bundle",
    "Parameters",
    "OperationOutcome",
    "Binary",
    "DomainResource",
    "Resource",
    "patient",
    "Unicorn",
    "",
    " Patient",
    "Patient ",
    "SearchParameter",
]


def leaf_values() -> st.SearchStrategy[Any]:
    """A value of any JSON type that a FHIR element is unlikely to expect."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.sampled_from(ODD_NUMBERS),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(SURROGATES),
        st.sampled_from(LONG_STRINGS),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.just([]),
        st.just({}),
        st.just([None]),
        st.just({"resourceType": "Patient"}),
        st.just({"extension": []}),
    )


def odd_values() -> st.SearchStrategy[Any]:
    """Leaf values and small containers of them."""
    return st.recursive(
        leaf_values(),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(KEY_NAMES), inner, max_size=3)
        ),
        max_leaves=6,
    )


# -- mutations ------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _paths(value: Any, here: Path_ = ()) -> Iterator[Path_]:
    yield here
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*here, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*here, index))


def _get(document: Any, path: Path_) -> Any:
    for step in path:
        document = document[step]
    return document


def _deep(value: Any, depth: int, kind: str) -> Any:
    for _ in range(depth):
        if kind == "list":
            value = [value]
        elif kind == "extension":
            value = {"url": "http://example.org/x", "extension": [value]}
        else:
            value = {"contained": [value]}
    return value


@st.composite
def _mutate_once(draw: st.DrawFn, document: Any) -> Any:
    """`document` (a fresh copy) with one mutation at one place (rarely the root)."""
    paths = list(_paths(document))
    inner = paths[1:] if len(paths) > 1 else paths
    path = paths[0] if draw(st.integers(0, 19)) == 19 else draw(st.sampled_from(inner))
    value = _get(document, path)
    op = draw(
        st.sampled_from(
            [
                "tweak",
                "tweak",
                "tweak",
                "replace",
                "drop",
                "duplicate",
                "rename",
                "wrap",
                "nest",
                "empty",
                "resource_type",
                "id",
                "reference",
            ]
        )
    )
    new: Any
    if op == "tweak":
        new = draw(_same_type(value))
    elif op == "replace":
        new = draw(odd_values())
    elif op == "wrap":
        new = draw(st.sampled_from([[value], {"value": value}, [value, value]]))
    elif op == "nest":
        kind = draw(st.sampled_from(["list", "extension", "contained"]))
        new = _deep(value, draw(st.integers(1, MAX_DEPTH)), kind)
    elif op == "empty":
        new = draw(st.sampled_from([[], {}, "", [{}], [[]]]))
    elif op == "resource_type" and isinstance(value, dict):
        new = {**value, "resourceType": draw(st.sampled_from(RESOURCE_TYPES) | leaf_values())}
    elif op == "id" and isinstance(value, dict):
        new = {**value, "id": draw(st.sampled_from(INVALID_IDS) | leaf_values())}
    elif op == "reference" and isinstance(value, dict):
        new = {**value, "reference": draw(st.sampled_from(ODD_STRINGS) | leaf_values())}
    elif op in ("drop", "duplicate", "rename") and path:
        return _change_parent(draw, document, path, op)
    else:
        new = draw(odd_values())
    return _put(document, path, new)


def _same_type(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same JSON type: what a lenient validator lets through to storage."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int | float):
        return (
            st.sampled_from(
                [n for n in ODD_NUMBERS if not isinstance(n, Raw)]
                + [0.1, -0.0, 1e308, 5e-324, 1.5, 123456789.123456789]
            )
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
        )
    if isinstance(value, str):
        return (
            st.sampled_from(ODD_STRINGS + SAME_TYPE_STRINGS)
            | st.text(max_size=20)
            | st.just(value + value)
            | st.just(value.upper())
            | st.just(value[: len(value) // 2])
        )
    if isinstance(value, list):
        return st.just(value[::-1]) | st.just(value * 3) | st.just(value[:1])
    if isinstance(value, dict):
        return st.builds(lambda k, v: {**value, k: v}, st.sampled_from(KEY_NAMES), leaf_values())
    return leaf_values()


def _put(document: Any, path: Path_, new: Any) -> Any:
    if not path:
        return new
    _get(document, path[:-1])[path[-1]] = new
    return document


def _change_parent(draw: st.DrawFn, document: Any, path: Path_, op: str) -> Any:
    parent, key = _get(document, path[:-1]), path[-1]
    if isinstance(parent, list):
        assert isinstance(key, int)
        if op == "drop":
            del parent[key]
        else:
            parent.insert(key, copy.deepcopy(parent[key]))
        return document
    assert isinstance(key, str)
    if op == "drop":
        del parent[key]
        return document
    if op == "rename":
        name = draw(
            st.sampled_from(KEY_NAMES)
            | st.sampled_from([f"_{key}", key.upper(), key + "x", key[:-1], f"{key}[0]"])
            | st.text(max_size=8)
        )
        parent[name] = parent.pop(key)
        return document
    # a repeated key: only the encoder can write it, so the parent becomes Pairs (last mutation)
    items = (*parent.items(), (key, draw(odd_values() | st.just(parent[key]))))
    return _put(document, path[:-1], Pairs(tuple(items)))


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any], max_mutations: int = 4) -> Any:
    """A copy of `seed` with 1 to `max_mutations` mutations (a `Pairs` ends the series)."""
    document: Any = copy.deepcopy(seed)
    for _ in range(draw(st.sampled_from([1, 1, 2, 3, max_mutations]))):
        document = draw(_mutate_once(document))
        if _has_pairs(document):
            break
    return document


def _has_pairs(value: Any) -> bool:
    """Whether a `Pairs` is anywhere in `value` (iterative: the mutations nest documents
    deeper than Python's recursion limit)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Pairs):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# -- search queries -------------------------------------------------------------------------

MODIFIERS = [
    "",
    "",
    "",
    ":missing",
    ":exact",
    ":contains",
    ":text",
    ":not",
    ":above",
    ":below",
    ":in",
    ":not-in",
    ":of-type",
    ":identifier",
    ":Patient",
    ":iterate",
    ":Observation",
    ":bogus",
    ":",
    "::",
]
PREFIXES = ["", "", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx", "GE"]
DATES = [
    "2024",
    "2024-05",
    "2024-05-01",
    "2024-05-01T10:00:00Z",
    "2024-05-01T10:00:00.123+02:00",
    "2024-05-01T10:00",
    "2024-13",
    "2024-02-30",
    "24-05-01",
    "0001-01-01",
    "0001",
    "9999-12-31T23:59:59Z",
    "2024-05-01T25:00:00Z",
    "2024-05-01T10:00:00+25:00",
    "now",
    "",
    "9999",
    "9999-12",
    "0001-01-01T00:00:00-14:00",
    "9999-12-31T23:59:59+14:00",
    "9999-12-31T23:59:59.9999999Z",
    "2024-05-01T10:00:00.123456789012Z",
    "1970-01-01T00:00:00Z",
    "2024-05-01T10:00:00Z ",
    "2024-05-01t10:00:00z",
    "+2024-05-01",
    "2024-5-1",
]
NUMBERS = [
    "0",
    "-0",
    "1",
    "72.5",
    "1e2",
    "1E-2",
    "-1.5e+3",
    "100e-2",
    ".5",
    "5.",
    "0x10",
    "1_000",
    "NaN",
    "inf",
    "9" * 40,
    "1e308",
    "1e-308",
    "1e309",
    "1e999999999",
    "-1e400",
    "1e-999999999",
    "9" * 400,
]
SEARCH_STRINGS = [
    *ODD_STRINGS,
    "x" * 5000,
    "a,b",
    "a\\,b",
    "a\\|b",
    "\\",
    "a$b",
    "|",
    "||",
    "a|b|c",
    "http://loinc.org|",
    "|8867-4",
    "(",
    "[",
    "*",
    "a.*",
    "^$",
    "+",
    "?",
    "\\d",
    "%",
    "_",
    "%_",
    "[a-",
    "\\E",
    "{1,2}",
]
FILTER_PATHS = [
    "name",
    "family",
    "birthdate",
    "gender",
    "code",
    "status",
    "subject",
    "subject.name",
    "value-quantity",
    "date",
    "identifier",
    "_id",
    "_lastUpdated",
    "bogus",
    "name.given",
    "subject:Patient.name",
]
FILTER_OPS = [
    "eq",
    "ne",
    "gt",
    "lt",
    "ge",
    "le",
    "sa",
    "eb",
    "ap",
    "sw",
    "ew",
    "co",
    "pr",
    "po",
    "ss",
    "sb",
    "in",
    "ni",
    "re",
    "xx",
]
FILTER_MAX_DEPTH = 24  # past the server's _filter nesting limit (16)


def _values(type_: str) -> st.SearchStrategy[str]:
    """Search values of any kind, from plausible to garbage."""
    prefix = st.sampled_from(PREFIXES)
    dated = st.builds(str.__add__, prefix, st.sampled_from(DATES))
    numbered = st.builds(str.__add__, prefix, st.sampled_from(NUMBERS))
    token = st.builds(
        lambda s, c: f"{s}|{c}",
        st.sampled_from(["", "http://loinc.org", "http://snomed.info/sct", "urn:oid:1.2", "|"]),
        st.sampled_from(["8867-4", "", "male", "final", "a|b", "\\|", "fuzz-1"]),
    )
    quantity = st.builds(
        lambda n, s, c: f"{n}|{s}|{c}",
        numbered,
        st.sampled_from(["", "http://unitsofmeasure.org", "x"]),
        st.sampled_from(["", "mg", "/min", "kg", "[lb_av]", "|"]),
    )
    reference = st.sampled_from(
        [
            "Patient/example",
            "example",
            "Patient/",
            "/",
            "Patient/a/b",
            "http://example.org/fhir/Patient/1",
            "urn:uuid:1",
            "#x",
            "Patient/example/_history/1",
            "Unicorn/1",
            "Patient/example|1",
        ]
    )
    scalar = st.one_of(
        dated,
        numbered,
        token,
        quantity,
        reference,
        st.sampled_from(SEARCH_STRINGS),
        st.text(max_size=20),
        st.sampled_from(["true", "false", "near|1|2|km", "1|2|3|mi", "$", "$$"]),
    )
    preferred = {
        "date": dated,
        "number": numbered,
        "quantity": quantity,
        "token": token,
        "reference": reference,
    }.get(type_, scalar)
    one = preferred | scalar
    many = st.integers(400, 1200).map(lambda n: ",".join(f"fuzz-{i}" for i in range(n)))
    return one | st.lists(one, min_size=2, max_size=20).map(",".join) | many


@st.composite
def _filter(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(
        st.sampled_from(
            ["cmp", "cmp", "and", "or", "not", "paren", "garbage"]
            if depth < FILTER_MAX_DEPTH
            else ["cmp"]
        )
    )
    if kind == "cmp":
        value = draw(
            st.sampled_from(
                DATES + NUMBERS + ['"x"', '"a b"', "true", "x", "http://loinc.org|8867-4", '"\\""']
            )
        )
        return f"{draw(st.sampled_from(FILTER_PATHS))} {draw(st.sampled_from(FILTER_OPS))} {value}"
    if kind in ("and", "or"):
        return f"{draw(_filter(depth + 1))} {kind} {draw(_filter(depth + 1))}"
    if kind == "not":
        return f"not ({draw(_filter(depth + 1))})"
    if kind == "paren":
        return f"({draw(_filter(depth + 1))})"
    return draw(
        st.sampled_from(
            [
                "(",
                ")",
                "and",
                "name eq",
                'name eq "x',
                "name[x eq 1] eq 2",
                "not name eq x",
                "((((",
                "name eq x or",
                "",
                " ",
            ]
        )
    )


@st.composite
def _parameter(draw: st.DrawFn, registry: SearchRegistry, type_: str) -> tuple[str, str]:
    params = registry.params_for(type_)
    code = draw(st.sampled_from(sorted(params)))
    kind = draw(
        st.sampled_from(["plain", "plain", "plain", "chain", "has", "result", "filter", "garbage"])
    )
    if kind == "chain":
        links = draw(
            st.lists(
                st.sampled_from(
                    [
                        "subject",
                        "patient",
                        "encounter",
                        "organization",
                        "general-practitioner",
                        "name",
                        "identifier",
                        "link",
                        "bogus",
                        "",
                        "part-of",
                        "_id",
                    ]
                ),
                min_size=1,
                max_size=6,
            )
        )
        type_hint = draw(st.sampled_from(["", ":Patient", ":Encounter", ":Unicorn"]))
        return f"{code}{type_hint}.{'.'.join(links)}", draw(_values("string"))
    if kind == "has":
        target = draw(st.sampled_from(["Observation", "Condition", "Encounter", "Unicorn", ""]))
        ref = draw(st.sampled_from(["subject", "patient", "encounter", "bogus", ""]))
        inner = draw(
            st.sampled_from(
                [
                    "code",
                    "status",
                    "_id",
                    "date",
                    "bogus",
                    "_has:Observation:subject:code",
                    "subject.name",
                ]
            )
        )
        return f"_has:{target}:{ref}:{inner}", draw(_values("token"))
    if kind == "result":
        return draw(_result_parameter(registry, type_))
    if kind == "filter":
        return "_filter", draw(_filter())
    if kind == "garbage":
        return draw(
            st.sampled_from(
                ["", "_", ":", ".", "_has", "_has:", "bogus", "name:", "_count:x", "a" * 300]
            )
        ), draw(_values("string"))
    modifier = draw(st.sampled_from(MODIFIERS))
    return f"{code}{modifier}", draw(_values(params[code].type))


@st.composite
def _result_parameter(draw: st.DrawFn, registry: SearchRegistry, type_: str) -> tuple[str, str]:
    codes = sorted(registry.params_for(type_))
    name = draw(
        st.sampled_from(
            [
                "_sort",
                "_include",
                "_revinclude",
                "_count",
                "_offset",
                "_page",
                "_summary",
                "_elements",
                "_total",
                "_contained",
                "_format",
                "_pretty",
                "_type",
                "_containedType",
                "_include:iterate",
                "_revinclude:iterate",
            ]
        )
    )
    count = st.integers(-5, 2**70).map(str) | st.sampled_from(
        ["", "x", "1.5", "1e3", "-0", "\u00b2", "\u0661", str(2**63), str(2**64)]
    )
    pools: dict[str, st.SearchStrategy[str]] = {
        "_sort": st.lists(
            st.builds(
                str.__add__,
                st.sampled_from(["", "-", "--", "+"]),
                st.sampled_from([*codes, "", "bogus", "_score"]),
            ),
            min_size=1,
            max_size=4,
        ).map(",".join),
        "_count": count,
        "_offset": count,
        "_page": st.text(max_size=40) | st.sampled_from(["AAAA", "e30", "eyJ4IjoxfQ==", "%%%"]),
        "_summary": st.sampled_from(["true", "false", "text", "data", "count", "x", ""]),
        "_elements": st.lists(
            st.sampled_from([*codes, "name", "id", "meta", "x.y", "", "*"]), max_size=4
        ).map(",".join),
        "_total": st.sampled_from(["none", "estimate", "accurate", "x"]),
        "_contained": st.sampled_from(["true", "false", "both", "x"]),
        "_containedType": st.sampled_from(["container", "contained", "x"]),
        "_format": st.sampled_from(["json", "xml", "html", "x", "application/fhir+xml"]),
        "_pretty": st.sampled_from(["true", "false", "x"]),
        "_type": st.sampled_from(["Patient", "Patient,Observation", "Unicorn", ""]),
    }
    include = st.builds(
        lambda t, p, x: f"{t}:{p}{x}",
        st.sampled_from([type_, "Observation", "Patient", "*", "Unicorn", ""]),
        st.sampled_from([*codes, "*", "subject", "bogus", ""]),
        st.sampled_from(["", ":Patient", ":Unicorn", ":"]),
    ) | st.just("*")
    pool = pools.get(name.partition(":")[0], include)
    return name, draw(pool)


@st.composite
def _paged(draw: st.DrawFn, registry: SearchRegistry, type_: str) -> list[tuple[str, str]]:
    """`_sort` with a forged `_page` token made for it: keys of any length and type."""
    sort = (
        draw(_result_parameter(registry, type_).filter(lambda p: p[0] == "_sort"))[1]
        if draw(st.booleans())
        else ""
    )
    key = draw(
        st.lists(
            st.none()
            | st.booleans()
            | st.integers(-(2**63), 2**63 - 1)
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.sampled_from(DATES + SEARCH_STRINGS[:20]),
            max_size=5,
        )
    )
    data = {
        "s": draw(st.just(sort) | st.sampled_from(["", "x", "_id"])),
        "b": draw(st.booleans() | st.none() | st.just("x")),
        "k": key,
    }
    drop = draw(st.sampled_from([None, None, None, "s", "b", "k"]))
    token = base64.urlsafe_b64encode(encode({k: v for k, v in data.items() if k != drop}))
    query = [("_page", token.decode().rstrip("="))]
    return [("_sort", sort), *query] if sort else query


def search_query(registry: SearchRegistry, type_: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Query parameters for a search on `type_`, repeats allowed (they are ANDs)."""
    one = _parameter(registry, type_)
    plain = st.lists(one, min_size=1, max_size=6).flatmap(
        lambda params: st.just(params) | st.just(params + params[:1])
    )
    return plain | st.builds(list.__add__, plain, _paged(registry, type_))
