"""HL7 v2 batches (chapter 2, 2.10.3): FHS/BHS ... messages ... BTS/FTS in one block.

A batch received in one MLLP block is taken apart at its MSH segments, on the bytes (each
message keeps its own MSH-18 character set), and each message goes through the inbound
path on its own: stored, committed and acknowledged as if it had come alone. The answer
is a batch too (2.10.3.3, "acknowledging batches"): a BHS whose BHS-12 names the received
batch's BHS-11, the ACK of every message in order, and a BTS with their count (inside
FHS/FTS when the batch came in one).
"""

from __future__ import annotations

import re

from adapters.hl7v2.ack import ENCODING_CHARS, FIELD_SEP, control_id, timestamp
from adapters.hl7v2.ingest import Ingestor, Reply

_BOM = b"\xef\xbb\xbf"
_ENVELOPE = re.compile(rb"(?:^|(?<=[\r\n]))(?:FHS|BHS|BTS|FTS)[^\r\n]*[\r\n]*")
_MSH = re.compile(rb"(?:^|(?<=[\r\n]))MSH")


def is_batch(raw: bytes) -> bool:
    return raw.removeprefix(_BOM).lstrip(b" \t\r\n\x0b")[:3] in (b"FHS", b"BHS")


def split(raw: bytes) -> list[bytes]:
    """The messages of a batch (or of a file of messages), each from its MSH, as sent."""
    body = _ENVELOPE.sub(b"", raw.removeprefix(_BOM))
    starts = [found.start() for found in _MSH.finditer(body)]
    return [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)], strict=True)]


async def receive_batch(ingestor: Ingestor, raw: bytes, reply: Reply) -> None:
    """Each message of the batch `raw` through `ingestor`, then one batch of their ACKs."""
    acks: list[bytes] = []

    async def collect(ack: bytes) -> None:
        acks.append(ack)

    for message in split(raw):
        await ingestor.receive(message, collect)
    await reply(_answer(raw, acks))


def _answer(raw: bytes, acks: list[bytes]) -> bytes:
    text = raw.removeprefix(_BOM).decode("latin-1")
    lines = re.split(r"\r\n|\r|\n", text.lstrip(" \t\r\n\x0b"))
    heads = {line[:3]: line for line in lines[:2] if line[:3] in ("FHS", "BHS")}
    out = []
    if "FHS" in heads:
        out.append(_header("FHS", heads["FHS"]))
    out.append(_header("BHS", heads.get("BHS", "")))
    body = b"".join(a if a.endswith(b"\r") else a + b"\r" for a in acks)
    tail = [f"BTS{FIELD_SEP}{len(acks)}"]
    if "FHS" in heads:
        tail.append(f"FTS{FIELD_SEP}1")
    return ("\r".join(out) + "\r").encode() + body + ("\r".join(tail) + "\r").encode()


def _header(name: str, received: str) -> str:
    """Our FHS/BHS answering `received`: sender and receiver swapped, -12 naming its -11."""
    sep = received[3:4] or FIELD_SEP
    fields = received.split(sep) if received else [name]
    fields.insert(1, sep)  # fields[n] is XHS-n

    def get(n: int) -> str:
        return fields[n] if n < len(fields) else ""

    return sep.join(
        [
            name,
            get(2) or ENCODING_CHARS,
            get(5),
            get(6),
            get(3),
            get(4),
            timestamp(),
            "",
            "",
            "",
            control_id(),
            get(11),
        ]
    )
