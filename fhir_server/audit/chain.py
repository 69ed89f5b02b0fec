"""Tamper evidence: every batch of AuditEvents is chained to the one before by SHA-256.

Each flush writes its events and one chain record in the same database transaction:
`AuditChain/<n>` holds the batch number, each event's id, version and the SHA-256 of its
stored bytes, the previous batch's hash and this batch's hash (over all of that), and,
when a signing key is configured, an HMAC-SHA256 of the hash. `AuditChain/head` names the
last batch; it is written with the storage port's version check, so two server processes
that flush at once cannot both append batch n: one retries as n + 1, and the chain stays
one line. (`AuditChain/journal` is the read journal's cursor: see `journal`.) `AuditChain`
is no FHIR resource type: no route of the API reaches it.

`verify` recomputes the chain and checks every event against it: a changed event (its
bytes no longer hash to the recorded digest), a removed one, one inserted outside any
batch, a changed, removed or reordered batch, and a wrong signature are each reported,
naming the batch. Cutting off the newest batches together with the head is only seen
against a head hash kept elsewhere: `verify` prints it for that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.interactions.common import now_instant
from fhir_server.storage.base import Storage, StorageReader, StorageTx, StoredResource

CHAIN = "AuditChain"
HEAD = "head"
GENESIS = "0" * 64


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def batch_hash(number: int, prev: str, events: Sequence[Sequence[object]]) -> str:
    lines = [f"{number}\n{prev}\n".encode()]
    lines.extend(f"{id} {version} {sha}\n".encode() for id, version, sha in events)
    return hashlib.sha256(b"".join(lines)).hexdigest()


def sign(key: bytes | None, value: str) -> str | None:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest() if key else None


async def append(tx: StorageTx, events: Sequence[StoredResource], key: bytes | None) -> int:
    """Chain `events` (stored in `tx`) as the next batch; its number."""
    head = await tx.read(CHAIN, HEAD)
    last: dict[str, Any] = orjson.loads(head.data) if head else {"batch": 0, "hash": GENESIS}
    number = int(last["batch"]) + 1
    listed = [[rec.id, rec.version, digest(rec.data)] for rec in events]
    value = batch_hash(number, last["hash"], listed)
    now = now_instant()
    record = {"batch": number, "prev": last["hash"], "hash": value, "events": listed}
    signature = sign(key, value)
    if signature:
        record["signature"] = signature
    await _put(tx, str(number), record, None, now)
    await _put(tx, HEAD, {"batch": number, "hash": value}, head, now)
    return number


async def _put(
    tx: StorageTx, id: str, body: dict[str, Any], current: StoredResource | None, now: str
) -> None:
    version = (current.version if current else 0) + 1
    rec = StoredResource(CHAIN, id, version, now, False, orjson.dumps(body), "PUT")
    await tx.write(rec, (), expected_version=version - 1)  # a concurrent append: conflict


@dataclass
class Report:
    """What `verify` found: `problems` empty when the log is intact."""

    batches: int = 0
    events: int = 0
    head: str = GENESIS
    problems: list[str] = field(default_factory=list)


async def verify(storage: Storage, key: bytes | None = None) -> Report:
    """Recompute the chain and check every stored AuditEvent against it."""
    report = Report()
    head = await _load(storage, HEAD)
    count = head.get("batch", 0) if head else 0
    if not isinstance(count, int):
        report.problems.append("the head of the chain is damaged")
        count = 0
    prev = GENESIS
    chained: set[str] = set()
    for number in range(1, count + 1):
        batch = await _load(storage, str(number))
        if batch is None:
            report.problems.append(f"batch {number}: its chain record was removed")
            continue
        prev = await _check_batch(storage, number, batch, prev, key, chained, report)
    if head is not None and head.get("hash") != prev:
        report.problems.append(f"batch {count}: the head does not name the last batch's hash")
    async for rec in storage.iter_current("AuditEvent"):
        if rec.id not in chained:
            report.problems.append(f"AuditEvent/{rec.id} is in no batch: it was inserted")
    report.batches, report.head = count, prev
    return report


async def _check_batch(
    storage: Storage,
    number: int,
    batch: dict[str, Any],
    prev: str,
    key: bytes | None,
    chained: set[str],
    report: Report,
) -> str:
    problems = report.problems
    listed = batch.get("events")
    if not isinstance(listed, list):
        problems.append(f"batch {number}: its chain record is damaged")
        return prev
    if batch.get("prev") != prev:
        problems.append(f"batch {number}: it does not follow batch {number - 1} (prev hash)")
    value = batch_hash(number, str(batch.get("prev")), listed)
    if not hmac.compare_digest(value, str(batch.get("hash"))):
        problems.append(f"batch {number}: its hash does not match its contents")
    if key is not None:
        wanted = sign(key, str(batch.get("hash"))) or ""
        if not hmac.compare_digest(wanted, str(batch.get("signature", ""))):
            problems.append(f"batch {number}: the signature is wrong or missing")
    for id, version, sha in listed:
        chained.add(str(id))
        report.events += 1
        problem = await _check_event(storage, str(id), int(version), str(sha))
        if problem:
            problems.append(f"batch {number}: AuditEvent/{id} {problem}")
    return str(batch.get("hash"))


async def _check_event(storage: Storage, id: str, version: int, sha: str) -> str | None:
    current = await storage.read("AuditEvent", id)
    if current is None or current.deleted:
        return "was removed"
    if current.version != version:
        return f"was changed (version {current.version}, chained {version})"
    if not hmac.compare_digest(digest(current.data), sha):
        return "was changed (its stored bytes differ)"
    kept = await storage.vread("AuditEvent", id, version)
    if kept is None or not hmac.compare_digest(digest(kept.data), sha):
        return "was changed in its history"
    return None


async def _load(db: StorageReader, id: str) -> dict[str, Any] | None:
    rec = await db.read(CHAIN, id)
    if rec is None or rec.deleted:
        return None
    try:
        found = orjson.loads(rec.data)
    except orjson.JSONDecodeError:
        return {"damaged": True}
    return found if isinstance(found, dict) else {"damaged": True}
