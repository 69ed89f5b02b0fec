"""The engine's errors, and what each server error means for the unit of work.

The driver's documented rules for transactions
(https://www.mongodb.com/docs/manual/core/transactions-in-applications/): an error labelled
`TransientTransactionError` means the whole transaction may be run again (nothing of it
was committed); `UnknownTransactionCommitResult` means only the commit may be retried (it
is idempotent), never the whole transaction, which might then be written twice. What
`classify` turns a server error into:

- a lost race (a duplicate `_id`, WriteConflict 112): `TransactionConflict`, a
  `VersionConflict` the service retries (and answers 409, or 412 under If-Match);
- too large or too long for one transaction (TransactionTooLarge 257,
  TransactionTooLargeForCache 313, TransactionExceededLifetimeLimitSeconds 290, an update
  past 16 MiB, a transaction aborted after outliving its lifetime): `TooLargeForStorage`,
  413 with a message that says to split it, at once (retrying meets the same limit);
- any other `TransientTransactionError` (an election, a closed connection, a lock
  timeout): `TransientStorageError`, which the service retries with back-off, then 503.

Reads outside a transaction (searches, reads, history) that lose the server or pass
`timeoutMS` are a 503 (`plain_reads`), not a 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout, PyMongoError

from fhir_server.errors import (
    ServiceUnavailable,
    TooLargeForStorage,
    TransientStorageError,
    VersionConflict,
)

WRITE_CONFLICT = 112
NO_SUCH_TRANSACTION = 251
_TOO_LARGE = {257, 313, 10334, 17419}  # TransactionTooLarge(ForCache), BSONObjectTooLarge
_TOO_LONG = {290, 50}  # TransactionExceededLifetimeLimitSeconds, MaxTimeMSExpired


class TransactionsUnavailable(RuntimeError):
    """The server is a standalone mongod: multi-document transactions need a replica set."""


class ReadPreferenceRefused(ValueError):
    """The connection string would read from secondaries inside transactions."""


class TransactionConflict(VersionConflict):
    """A concurrent transaction won a lock or a commit; the caller retries the whole unit.

    A `VersionConflict`, so the service's retry loop handles it like a lost version race.
    `type`/`id` name what conflicted: ("lock", key) or the last resource written.
    """


def is_conflict(error: PyMongoError) -> bool:
    """A lost race: a duplicate key, or a write conflict with another transaction."""
    return isinstance(error, DuplicateKeyError) or getattr(error, "code", None) == WRITE_CONFLICT


def too_large(elapsed: float, lifetime: float) -> TooLargeForStorage:
    what = "long" if elapsed > lifetime else "large"
    return TooLargeForStorage(
        f"The transaction is too {what} for the database (it ran {elapsed:.0f} s; the limit "
        f"is {lifetime:.0f} s and 16 MiB per resource): split it into smaller Bundles"
    )


def classify(
    error: PyMongoError, where: tuple[str, str], elapsed: float, lifetime: float
) -> Exception:
    """What the service sees of `error` raised `elapsed` seconds into a transaction."""
    code = getattr(error, "code", None)
    if is_conflict(error):
        return TransactionConflict(*where, None)
    if code in _TOO_LARGE or code in _TOO_LONG:
        return too_large(elapsed, lifetime)
    if code == NO_SUCH_TRANSACTION and elapsed > lifetime:  # the server aborted it: too long
        return too_large(elapsed, lifetime)
    if error.has_error_label("TransientTransactionError"):
        return TransientStorageError(f"{type(error).__name__}: {error}")
    return error


def commit_unknown() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The database did not confirm the commit (a failover or lost connection); the "
        "changes may or may not be stored: read them before sending the request again"
    )


@contextmanager
def plain_reads(in_transaction: bool) -> Iterator[None]:
    """Outside a transaction, a lost server or an expired time limit is a 503."""
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout) as error:
        if in_transaction:  # the transaction's own handling (`classify`) decides
            raise
        raise ServiceUnavailable(
            "The database did not answer in time (a failover, a lost connection or its "
            "time limit); nothing changed: retry, or narrow the search"
        ) from error
