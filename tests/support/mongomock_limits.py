"""The server limits and fault injection of the mongomock adapter (`mongomock_async`).

mongomock itself has no size, time or memory limits, so a bug that only a real server
would show (a 17 MiB document, a regex with a NUL byte, a sort past the memory limit, a
transaction that outlives its lifetime) would pass on it. `ServerLimits` holds what the
adapter enforces, as MongoDB 6.0-8.x does by default, each with the error class, code and
labels PyMongo raises for it:

- BSON size: a document to insert over `max_bson_bytes` (16 MiB) raises PyMongo's
  client-side `DocumentTooLarge`; so does any command (filter, update, pipeline together)
  over `max_bson_bytes` + 16 KiB; an update whose resulting document is over 16 MiB fails on
  the server with code 17419.
- Regex: a `$regex` pattern with a NUL byte, or longer than `max_regex_chars` (32,764),
  fails with BadValue (code 2), the server's messages.
- Sorts: without `allowDiskUse`, a sort whose documents exceed `sort_memory_bytes`
  (100 MiB by default; tests lower it) fails with code 292
  (QueryExceededMemoryLimitNoDiskUseAllowed). The adapter measures the sorted documents,
  projected or not, so a sort that carries the resource bodies costs what it would.
- Transactions: the options `start_transaction` is given are recorded (`last_options`);
  a transaction older than `transaction_lifetime_s` (60 s, the server's
  `transactionLifetimeLimitSeconds`) is aborted: its next operation fails with
  NoSuchTransaction (251, labelled TransientTransactionError, as the server answers); one
  that writes more than `transaction_write_bytes` fails with TransactionTooLargeForCache
  (313, no label: retrying meets the same limit).

`FailPoints` is the `failCommand` fail point of the real server (`configureFailPoint`):
`client.fail_points.add(FailCommand(["insert"], code=112, labels=["TransientTransactionError"],
times=1))` makes the next matching command fail that way; `close_connection=True` raises
the network error PyMongo raises instead, labelled as the driver labels it inside a
transaction (TransientTransactionError, or UnknownTransactionCommitResult on commit).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import bson
from pymongo.errors import AutoReconnect, DocumentTooLarge, OperationFailure

MIB = 1024 * 1024
COMMAND_OVERHEAD = 16 * 1024  # what the server accepts above maxBsonObjectSize in a command


@dataclass(slots=True)
class ServerLimits:
    """The limits the adapter enforces; the defaults are the server's."""

    max_bson_bytes: int = 16 * MIB
    max_regex_chars: int = 32_764
    sort_memory_bytes: int = 100 * MIB
    transaction_lifetime_s: float = 60.0
    transaction_write_bytes: int = 512 * MIB


@dataclass(slots=True)
class FailCommand:
    """One `failCommand` configuration: the commands it applies to and how they fail."""

    commands: Sequence[str]
    code: int = 0
    labels: Sequence[str] = ()
    times: int = 1
    close_connection: bool = False
    message: str = "Failing command via 'failCommand' failpoint"


@dataclass(slots=True)
class FailPoints:
    active: list[FailCommand] = field(default_factory=list)
    hits: list[str] = field(default_factory=list)  # the commands that were failed

    def add(self, point: FailCommand) -> None:
        self.active.append(point)

    def check(self, command: str, in_transaction: bool) -> None:
        for point in self.active:
            if command in point.commands and point.times > 0:
                point.times -= 1
                self.hits.append(command)
                raise _injected(point, command, in_transaction)


def _injected(point: FailCommand, command: str, in_transaction: bool) -> Exception:
    if point.close_connection:
        error = AutoReconnect(f"connection closed ({command})")
        if in_transaction or command == "commitTransaction":
            label = (
                "UnknownTransactionCommitResult"
                if command == "commitTransaction"
                else "TransientTransactionError"
            )
            error._add_error_label(label)
        return error
    details = {"errmsg": point.message, "code": point.code, "errorLabels": list(point.labels)}
    return OperationFailure(point.message, point.code, details)


def failure(message: str, code: int, labels: Iterable[str] = ()) -> OperationFailure:
    details = {"errmsg": message, "code": code, "errorLabels": list(labels)}
    return OperationFailure(message, code, details)


def bson_size(document: Any) -> int:
    return len(bson.encode(document if isinstance(document, dict) else {"v": document}))


def check_document(limits: ServerLimits, document: dict[str, Any]) -> None:
    """A document to insert: PyMongo refuses one over the server's maxBsonObjectSize."""
    size = bson_size(document)
    if size > limits.max_bson_bytes:
        raise DocumentTooLarge(
            f"BSON document too large ({size} bytes) - the connected server supports BSON "
            f"document sizes up to {limits.max_bson_bytes} bytes."
        )


def check_command(limits: ServerLimits, *parts: Any) -> None:
    """A command made of `parts`: over maxBsonObjectSize + 16 KiB PyMongo refuses to send it."""
    size = sum(bson_size(p) for p in parts if p is not None)
    if size > limits.max_bson_bytes + COMMAND_OVERHEAD:
        raise DocumentTooLarge(f"command document too large ({size} bytes)")
    for part in parts:
        _check_regexes(limits, part)


def check_updated(limits: ServerLimits, document: dict[str, Any] | None) -> None:
    """The server refuses an update whose resulting document is over 16 MiB."""
    if document is not None and bson_size(document) > limits.max_bson_bytes:
        raise failure(
            f"Resulting document after update is larger than {limits.max_bson_bytes}", 17419
        )


def _check_regexes(limits: ServerLimits, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$regex":
                _check_regex(limits, item)
            else:
                _check_regexes(limits, item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_regexes(limits, item)


def _check_regex(limits: ServerLimits, pattern: Any) -> None:
    text = pattern if isinstance(pattern, str) else getattr(pattern, "pattern", "")
    if len(text.encode()) > limits.max_regex_chars:
        raise failure("Regular expression is too long", 2)
    if "\0" in text:
        raise failure("Regular expression cannot contain an embedded null byte", 2)


def check_sort(limits: ServerLimits, documents: list[dict[str, Any]], disk: bool) -> None:
    """A blocking sort over `documents` without allowDiskUse fails past the memory limit."""
    if disk:
        return
    used = 0
    for doc in documents:
        used += bson_size(doc)
        if used > limits.sort_memory_bytes:
            raise failure(
                "Executor error during find command :: caused by :: Sort exceeded memory "
                f"limit of {limits.sort_memory_bytes} bytes, but did not opt in to "
                "external sorting.",
                292,
            )


class TransactionClock:
    """When a transaction started and what it wrote, for the lifetime and size limits."""

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self._started = time.monotonic()
        self.written_bytes = 0

    def expired(self) -> bool:
        return time.monotonic() - self._started > self._limits.transaction_lifetime_s

    def add_write(self, document: Any) -> None:
        self.written_bytes += bson_size(document)
        if self.written_bytes > self._limits.transaction_write_bytes:
            raise failure("Transaction is too large and will not fit in the storage cache", 313)


def expired_error() -> OperationFailure:
    return failure(
        "Transaction with { txnNumber: 1 } has been aborted.", 251, ["TransientTransactionError"]
    )
