"""The engine's errors, and which server errors mean a lost race."""

from __future__ import annotations

from pymongo.errors import DuplicateKeyError, PyMongoError

from fhir_server.errors import VersionConflict

_WRITE_CONFLICT = 112  # the server's WriteConflict error code


class TransactionsUnavailable(RuntimeError):
    """The server is a standalone mongod: multi-document transactions need a replica set."""


class TransactionConflict(VersionConflict):
    """A concurrent transaction won a lock or a commit; the caller retries the whole unit.

    A `VersionConflict`, so the service's retry loop handles it like a lost version race.
    `type`/`id` name what conflicted: ("lock", key) or the last resource written.
    """


def is_conflict(error: PyMongoError) -> bool:
    """A lost race: a duplicate key, or a write conflict with another transaction."""
    return (
        isinstance(error, DuplicateKeyError)
        or error.has_error_label("TransientTransactionError")
        or getattr(error, "code", None) == _WRITE_CONFLICT
    )
