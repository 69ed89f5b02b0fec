"""The HL7 v2 write path's shortcuts give what the plain path gives.

- A transaction's reference rewrite (`transaction._rewrite`): conditional references are now
  collected in document order and resolved before they are put in; checked against a
  rewrite that resolves each conditional reference where it meets it, on nested elements of a
  resource type without an R4B model (whose untyped elements hold links only in
  `reference` strings), including which conditional reference fails first.
- The inbox flushes to disk for every commit but those that only record outcomes.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.inbox import Inbox
from fhir_server.errors import PreconditionFailed
from fhir_server.interactions import transaction

IDS = {"urn:uuid:1": "Patient/p1", "urn:uuid:2": "Encounter/e2"}
REFS = [
    "Patient?identifier=a|1",
    "Practitioner?identifier=b|2",
    "Patient/x",
    "urn:uuid:1",
    "Bad?x=1",
    "http://x/Patient?y=1",
    "urn:uuid:2",
    "Organization?name=z",
]


async def _old_rewrite(value: Any, ids: dict[str, str], resolve: Any) -> Any:
    """The rewrite of untyped elements, recursive, resolving each conditional reference
    where met: only `reference` strings are links (other strings, `div` too, are data)."""
    if isinstance(value, dict):
        out = {}
        for key, child in value.items():
            if key == "reference" and transaction._conditional(child):
                out[key] = await resolve(child)
            elif key == "reference" and isinstance(child, str):
                out[key] = ids.get(child, child)
            else:
                out[key] = await _old_rewrite(child, ids, resolve)
        return out
    if isinstance(value, list):
        return [await _old_rewrite(child, ids, resolve) for child in value]
    return value


def _random_value(rnd: random.Random, depth: int) -> Any:
    kind = rnd.random()
    if depth > 3 or kind < 0.3:
        return rnd.choice([*REFS, "plain", 3, True, None, 2.5])
    if kind < 0.5:
        return [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    out: dict[str, Any] = {}
    for _ in range(rnd.randint(0, 4)):
        key = rnd.choice(["reference", "div", "value", "subject", "item", "display"])
        if key == "div":
            out[key] = rnd.choice(["<div>see urn:uuid:1 and urn:uuid:2</div>", {"x": "urn:uuid:1"}])
        else:
            out[key] = _random_value(rnd, depth + 1)
    return out


@pytest.mark.parametrize("seed", range(300))
async def test_rewrite_matches_the_recursive_rewrite(seed: int, monkeypatch: Any) -> None:
    rnd = random.Random(seed)
    resource = {
        "resourceType": "MedicinalProduct",
        "x": _random_value(rnd, 0),
        "y": _random_value(rnd, 0),
    }

    def resolver(calls: list[str]) -> Any:
        async def resolve(ref: str) -> str:
            calls.append(ref)
            if ref.startswith("Organization"):
                raise PreconditionFailed(f"Conditional reference '{ref}' matches 0 resources")
            return ref.split("?")[0] + "/" + str(len(ref))

        return resolve

    old_calls: list[str] = []
    new_calls: list[str] = []
    old_resolve, new_resolve = resolver(old_calls), resolver(new_calls)

    async def patched(svc: Any, req: Any, db: Any, ref: str) -> str:
        return await new_resolve(ref)

    monkeypatch.setattr(transaction, "_resolve_reference", patched)
    try:
        expected: Any = await _old_rewrite(resource, IDS, old_resolve)
    except PreconditionFailed as error:
        expected = error.diagnostics
    try:
        got: Any = await transaction._rewrite(None, None, None, resource, IDS)  # type: ignore[arg-type]
    except PreconditionFailed as error:
        got = error.diagnostics
    assert got == expected
    assert list(dict.fromkeys(new_calls)) == list(dict.fromkeys(old_calls))


async def test_inbox_flushes_except_for_outcomes_alone(tmp_path: Path) -> None:
    inbox = await Inbox(tmp_path / "inbox.db").open()
    try:
        stored, new = await inbox.call(inbox.file.receive, "A|B", "1", "ADT^A01", b"MSH|x")
        assert new and not inbox._lazy  # a message is stored with a disk flush
        await inbox.call(inbox.file.finish, stored.id, "done", "MSH|ack")
        assert inbox._lazy  # recording its outcome alone is not flushed
        await inbox.call(inbox.file.message, stored.id)
        assert not inbox._lazy  # anything else is
        again = await inbox.call(inbox.file.message, stored.id)
        assert again is not None and again.state == "done" and again.ack == "MSH|ack"
    finally:
        await inbox.close()
