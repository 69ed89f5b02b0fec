"""What the request path hands the audit trail: one small record per exchange, built later.

Building the AuditEvent (JSON, the patients of each resource) is left to the writer, after
the response: the request path only appends an `Exchange` to a queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from fhir_server.interactions.observed import Observed

Kind = Literal["rest", "token", "login", "hl7"]


@dataclass(slots=True)  # not frozen: its __init__ would cost 5x more, on the request path
class Exchange:
    """One audited exchange: an HTTP request and its status, or one HL7 v2 message.
    Nothing changes one once made.

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


def hl7_exchange(ack: bytes, peer: str | None, seen: Observed | None) -> Exchange:
    """The audit record of one HL7 v2 message, from the ACK it was answered with."""
    fields = {seg[:3]: seg.split(ack[3:4].decode("latin-1") or "|") for seg in _segments(ack)}
    msa, msh = fields.get("MSA", []), fields.get("MSH", [])
    code = msa[1] if len(msa) > 1 else "AE"
    control = msa[2] if len(msa) > 2 else ""
    message = msh[8] if len(msh) > 8 else "ACK"
    status = {"A": 200, "E": 400}.get(code[1:], 500)  # AA/CA, AE/CE, AR/CR
    return Exchange(
        "hl7", "MLLP", "hl7v2", b"", status, peer, time.time(), seen, f"{message} {code} {control}"
    )


def _segments(ack: bytes) -> list[str]:
    return [s for s in ack.decode("utf-8", "replace").replace("\n", "\r").split("\r") if s]
