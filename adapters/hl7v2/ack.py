"""HL7 v2.5.1 acknowledgements: build the ACK we answer with, read the ACK we are sent.

An ACK is `MSH MSA [ERR]` (HL7 v2.5.1 chapter 2, 2.9.2 and 2.14.1). The MSH swaps sender
and receiver of the message it answers, MSA-1 is the acknowledgement code (AA/AE/AR in
original mode and for application ACKs, CA/CE/CR for enhanced-mode commit ACKs) and MSA-2
"shall contain the message control ID of the message sent by the sending system" (MSH-10).
An error adds ERR with ERR-2 the location, ERR-3 the HL7 table 0357 code as a CWE
(`207^Application internal error^HL70357`), ERR-4 severity (`E`, or `W` for what an
accepted message lost, such as a segment left out) and ERR-8 the text.
A message whose MSH cannot be read still gets an AR, under a default MSH.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from adapters.hl7v2.message import Header

FIELD_SEP = "|"
ENCODING_CHARS = "^~\\&"
VERSION = "2.5.1"
ACCEPT = frozenset({"AA", "CA"})

TABLE_0357 = {
    "0": "Message accepted",
    "100": "Segment sequence error",
    "101": "Required field missing",
    "102": "Data type error",
    "103": "Table value not found",
    "200": "Unsupported message type",
    "201": "Unsupported event code",
    "202": "Unsupported processing id",
    "203": "Unsupported version id",
    "204": "Unknown key identifier",
    "205": "Duplicate key identifier",
    "206": "Application record locked",
    "207": "Application internal error",
}

# MSH-18 character sets (HL7 table 0211) we answer in; anything else is answered in UTF-8.
CHARSETS = {
    "": "utf-8",
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR6": "ascii",
    "ISO IR100": "latin-1",
}

_sequence = itertools.count(1)
_prefix = f"{os.getpid() % 10000:04d}{int(time.time()) % 100000:05d}"


@dataclass(frozen=True, slots=True)
class AckError:
    """What went wrong, as ERR carries it: table 0357 code, location (e.g. PID^1^3), text."""

    text: str
    code: str = "207"
    location: str = ""


def control_id() -> str:
    """A new MSH-10 for a message we originate, unique within this process and start."""
    return f"{_prefix}{next(_sequence)}"


def timestamp(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")


def build_ack(
    header: Header | None,
    code: str,
    error: AckError | None = None,
    warnings: Sequence[AckError] = (),
) -> str:
    """The ACK to `header`'s message (None: its MSH could not be read), ER7 with CR ends;
    each of `warnings` (e.g. a segment left out of an accepted message) adds an ERR of
    severity W."""
    sep = header.field_sep if header and header.field_sep else FIELD_SEP
    enc = header.encoding_chars if header and header.encoding_chars else ENCODING_CHARS
    esc = Escaper(sep, enc)
    trigger = header.trigger_event if header else ""
    msh = [
        "MSH",
        enc,
        header.receiving_application if header else "",
        header.receiving_facility if header else "",
        header.sending_application if header else "",
        header.sending_facility if header else "",
        timestamp(),
        "",
        f"ACK{enc[0]}{trigger}{enc[0]}ACK" if trigger else "ACK",
        control_id(),
        (header.processing_id if header else "") or "P",
        VERSION,
    ]
    if header and header.charset:
        msh += ["", "", "", "", "", header.charset]  # MSH-18, after MSH-13..17
    text = esc(error.text) if error else ""
    msa = ["MSA", code, esc(header.control_id) if header else "", text]
    segments = [sep.join(msh), sep.join(msa).rstrip(sep)]
    for found, severity in ([(error, "E")] if error else []) + [(w, "W") for w in warnings]:
        cwe = enc[0].join((found.code, esc(TABLE_0357.get(found.code, "")), "HL70357"))
        detail = esc(found.text)
        segments.append(sep.join(["ERR", "", found.location, cwe, severity, "", "", "", detail]))
    return "\r".join(segments) + "\r"


def encode(text: str, header: Header | None) -> bytes:
    """ER7 text as bytes in the message's MSH-18 character set."""
    codec = CHARSETS.get((header.charset if header else "").upper(), "utf-8")
    return text.encode(codec, "replace")


@dataclass(frozen=True, slots=True)
class ReceivedAck:
    """An ACK someone sent us: MSA-1, MSA-2 and the error text if any (MSA-3 or ERR)."""

    code: str
    control_id: str
    text: str = ""

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPT


def read_ack(raw: bytes | str) -> ReceivedAck:
    """MSA-1 / MSA-2 / text of an ACK; code "" when there is no MSA segment."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    segments = [s for s in text.replace("\n", "\r").split("\r") if s.strip()]
    sep = segments[0][3:4] if segments and segments[0].startswith("MSH") else FIELD_SEP
    code = control = detail = ""
    for segment in segments:
        fields = segment.split(sep)
        if fields[0] == "MSA":
            code, control = _at(fields, 1), _at(fields, 2)
            detail = detail or _at(fields, 3)
        elif fields[0] == "ERR":
            detail = _at(fields, 8) or _at(fields, 3) or detail
    return ReceivedAck(code, control, detail)


def _at(fields: list[str], index: int) -> str:
    return fields[index] if index < len(fields) else ""


class Escaper:
    """HL7 escape sequences (chapter 2, 2.7) for text placed in a field."""

    def __init__(self, sep: str, enc: str) -> None:
        component, repetition, escape = enc[0], enc[1], enc[2]
        subcomponent = enc[3] if len(enc) > 3 else "&"
        self.table = str.maketrans(
            {
                escape: f"{escape}E{escape}",
                sep: f"{escape}F{escape}",
                component: f"{escape}S{escape}",
                repetition: f"{escape}R{escape}",
                subcomponent: f"{escape}T{escape}",
                "\r": " ",
                "\n": " ",
            }
        )

    def __call__(self, text: str) -> str:
        return text.translate(self.table)
