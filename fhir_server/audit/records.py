"""What the request path hands the audit trail: one small record per exchange, built later.

Building the AuditEvent (JSON, the patients of each resource) is left to the writer, after
the response: the request path only appends an `Exchange` to a queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fhir_server.interactions.observed import Observed

Kind = Literal["rest", "token", "login", "hl7"]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One audited exchange: an HTTP request and its status, or one HL7 v2 message.

    `path` is relative to the FHIR base for `rest` ("Patient/1"), the HTTP path otherwise;
    `query` the raw query string; `status` the HTTP status (HL7 v2: 200, 400 or 500 by the
    ACK code, which is in `detail` with the message type and control id)."""

    kind: Kind
    method: str
    path: str
    query: bytes
    status: int
    address: str | None
    recorded: float  # seconds since the epoch
    observed: Observed | None
    detail: str | None = None
