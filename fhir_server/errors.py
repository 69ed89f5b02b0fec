"""The one error hierarchy of the FHIR server, rendered as OperationOutcome in one place.

    FhirError                       500 exception
    ├── BadRequest                  400 invalid      (malformed body, bad parameter, id mismatch)
    │   └── InvalidResource         400 invalid      (failed FHIR validation; issues name paths)
    ├── Unauthorized                401 login
    ├── Forbidden                   403 forbidden    (access policy said no)
    ├── NotFound                    404 not-found    (unknown type, id or version)
    ├── MethodNotAllowed            405 not-supported
    ├── NotAcceptable               406 not-supported
    ├── Conflict                    409 conflict     (update races, version conflicts)
    ├── Gone                        410 deleted      (read of a deleted resource)
    ├── PreconditionFailed          412 conflict     (If-Match / conditional criteria)
    ├── PayloadTooLarge             413 too-long
    │   └── TooLargeForStorage      413 too-costly   (more than the database holds at once)
    ├── UnsupportedMediaType        415 not-supported
    ├── Unprocessable               422 processing   (business rules)
    ├── NotImplementedHere          501 not-supported (a feature this server does not offer)
    └── ServiceUnavailable          503 transient    (the database is failing over; retry later)

Each carries an HTTP status and an OperationOutcome issue code; `outcome()` renders it.
Storage engines raise `VersionConflict` (a lost version race: the service retries) and
`TransientStorageError` (nothing was written and running the unit again may succeed: the
service retries it with back-off, then answers 503).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: severity, code, diagnostics and the element paths at fault."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    status: int = 500
    code: str = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: tuple[str, ...] | list[str] = (),
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.issues = issues or [Issue(diagnostics, self.code, "error", tuple(expression))]
        self.headers = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(FhirError):
    status, code = 400, "invalid"


class InvalidResource(BadRequest):
    """A resource that fails FHIR validation; `issues` name each failing element path."""


class Unauthorized(FhirError):
    status, code = 401, "login"


class Forbidden(FhirError):
    status, code = 403, "forbidden"


class NotFound(FhirError):
    status, code = 404, "not-found"


class MethodNotAllowed(FhirError):
    status, code = 405, "not-supported"


class NotAcceptable(FhirError):
    status, code = 406, "not-supported"


class Conflict(FhirError):
    status, code = 409, "conflict"


class Gone(FhirError):
    status, code = 410, "deleted"


class PreconditionFailed(FhirError):
    status, code = 412, "conflict"


class PayloadTooLarge(FhirError):
    status, code = 413, "too-long"


class TooLargeForStorage(PayloadTooLarge):
    """A resource or a transaction beyond what the database holds in one unit: split it."""

    code = "too-costly"


class UnsupportedMediaType(FhirError):
    status, code = 415, "not-supported"


class Unprocessable(FhirError):
    status, code = 422, "processing"


class NotImplementedHere(FhirError):
    status, code = 501, "not-supported"


class ServiceUnavailable(FhirError):
    status, code = 503, "transient"


@dataclass
class VersionConflict(Exception):
    """Raised by a storage engine when the current version is not the one the writer expected."""

    type: str
    id: str
    expected: int | None
    actual: int | None = field(default=None)


class TransientStorageError(Exception):
    """The database could not run the transaction now (an election, a lost connection);
    nothing of it was written, so the whole unit may be run again."""
