"""Reading HL7 v2 ER7 messages: bytes to text, the MSH header, segments, fields and escapes.

HL7 v2.5.1 chapter 2 (Control), https://www.hl7.org/implement/standards/product_brief.cfm?product_id=144:
2.5.4 "the segment terminator is always a carriage return"; 2.5.5 the delimiters are the ones
MSH-1 and MSH-2 declare (v2.7+ adds a fifth, the truncation character); 2.7 escape sequences
(\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\ \\Xhh\\ \\.br\\); 2.10.3 batches (FHS/BHS ... BTS/FTS);
MSH-18 names the character set of everything after MSH.

The hot path splits segments and fields itself: hl7apy (the message model: versions and
message structures, see `check_supported`) costs about 4 ms to parse one PID segment, so
fields are only split on the segments a map reads, and only decoded where it reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache, lru_cache

from hl7apy import load_library

from adapters.hl7v2.registry import SUPPORTED_EVENTS

_BOM = "\ufeff"
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_LINE = re.compile(r"\r\n|\r|\n")
_STANDARD = "^~\\&"
_CHARSETS = {
    "ASCII": "ascii",
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "8859/1": "iso-8859-1",
    "8859/2": "iso-8859-2",
    "8859/5": "iso-8859-5",
    "8859/7": "iso-8859-7",
    "8859/9": "iso-8859-9",
    "8859/15": "iso-8859-15",
    "CP1252": "cp1252",
    "WINDOWS-1252": "cp1252",
    "ISO-8859-1": "iso-8859-1",
    "ISO_IR 100": "iso-8859-1",
    "ISO_IR 192": "utf-8",
}
_BATCH_SEGMENTS = frozenset({"FHS", "BHS", "BTS", "FTS"})
_OLDEST, _NEWEST = (2, 3), (2, 8, 2)


class MessageError(Exception):
    """A message that cannot be accepted: `ack_code` AE (content) or AR (rejected).

    `error_code` is from HL7 table 0357 (100 segment sequence, 101 required field missing,
    102 data type, 103 table value not found, 200 unsupported message type, 201 unsupported
    event, 202 unsupported processing id, 203 unsupported version, 207 internal error);
    `location` is "SEG^occurrence^field" (e.g. "PID^1^3") when one field is at fault.
    """

    def __init__(
        self, text: str, *, ack_code: str = "AE", error_code: str = "207", location: str = ""
    ) -> None:
        super().__init__(text)
        self.text = text
        self.ack_code = ack_code
        self.error_code = error_code
        self.location = location


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""


@dataclass(frozen=True)
class Header:
    """What MSH says. HD and MSG fields are given in standard ER7 (`^` between components)."""

    field_sep: str
    encoding_chars: str
    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str
    message_type: str
    trigger_event: str
    structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str
    application_ack_type: str
    charset: str
    timestamp: str = ""  # MSH-7 as sent

    @property
    def delimiters(self) -> Delimiters:
        chars = self.encoding_chars
        return Delimiters(self.field_sep, chars[0], chars[1], chars[2], chars[3], chars[4:5])


def read_header(raw: bytes | str) -> Header:
    """The MSH of `raw` (the first MSH of a batch), reading nothing else."""
    if isinstance(raw, bytes):
        raw = raw[:4096].removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    return _header(_first_msh(raw.lstrip(_BOM + " \t\r\n\x0b")))


@lru_cache(maxsize=256)  # decode() and parse() both read the MSH of the same message
def _header(line: str) -> Header:
    delims = _delimiters(line)
    fields = line.split(delims.field)
    fields.insert(1, delims.field)  # fields[n] is MSH-n

    def get(n: int, component: int | None = None) -> str:
        value = fields[n] if n < len(fields) else ""
        value = value.split(delims.repetition)[0]
        if component is None:
            return _standard_er7(value, delims)
        parts = value.split(delims.component)
        return unescape(parts[component], delims) if component < len(parts) else ""

    return Header(
        field_sep=delims.field,
        encoding_chars=fields[2],
        sending_application=get(3),
        sending_facility=get(4),
        receiving_application=get(5),
        receiving_facility=get(6),
        message_type=get(9, 0),
        trigger_event=get(9, 1),
        structure=get(9, 2) or _structure(get(9, 0), get(9, 1)),
        control_id=get(10, 0),
        processing_id=get(11, 0),
        version=get(12, 0),
        accept_ack_type=get(15, 0),
        application_ack_type=get(16, 0),
        charset=get(18, 0),
        timestamp=get(7, 0),
    )


def _first_msh(text: str) -> str:
    for line in _LINE.split(text, maxsplit=3)[:3]:
        if line.startswith("MSH"):
            return line
        if line[:3] not in ("FHS", "BHS"):
            break
    raise MessageError(
        "The message does not start with a readable MSH segment",
        ack_code="AR",
        error_code="100",
        location="MSH^1",
    )


def _delimiters(msh: str) -> Delimiters:
    if len(msh) < 8:
        raise MessageError(
            "MSH is too short to declare its delimiters", ack_code="AR", location="MSH^1^2"
        )
    sep = msh[3]
    chars = msh[4:].split(sep, 1)[0]
    if (
        sep.isalnum()
        or sep.isspace()
        or len(chars) not in (4, 5)
        or len(set(chars + sep)) != len(chars) + 1
        or any(c.isalnum() or c.isspace() for c in chars)
    ):
        raise MessageError(
            f"MSH-1/MSH-2 '{msh[3:8]}' do not declare valid delimiters",
            ack_code="AR",
            location="MSH^1^2",
        )
    return Delimiters(sep, chars[0], chars[1], chars[2], chars[3], chars[4:5])


def _standard_er7(value: str, delims: Delimiters) -> str:
    """A field re-written with the standard delimiters (an ACK is built with those)."""
    if delims.field + delims.component + delims.repetition + delims.escape == "|" + _STANDARD[:3]:
        return value
    return "^".join(
        "&".join(escape(unescape(sub, delims)) for sub in comp.split(delims.subcomponent))
        for comp in value.split(delims.component)
    )


def escape(text: str) -> str:
    """`text` escaped for the standard delimiters."""
    out = text.replace("\\", "\\E\\")
    for char, code in (("|", "F"), ("^", "S"), ("&", "T"), ("~", "R")):
        out = out.replace(char, f"\\{code}\\")
    return out.replace("\r", "\\X0D\\").replace("\n", "\\.br\\")


@cache
def _escape_pattern(esc: str) -> re.Pattern[str]:
    e = re.escape(esc)
    return re.compile(f"{e}([^{e}]*){e}")


def unescape(text: str, delims: Delimiters) -> str:
    """`text` with its escape sequences resolved (formatting ones become line breaks)."""
    if delims.escape not in text:
        return text
    table = {
        "F": delims.field,
        "S": delims.component,
        "T": delims.subcomponent,
        "R": delims.repetition,
        "E": delims.escape,
        "P": delims.truncation,
        ".br": "\n",
        ".sp": "\n",
    }

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in table:
            return table[code]
        if code[:1] == "X" and len(code) % 2 == 1:
            try:
                return _hex_text(bytes.fromhex(code[1:]))
            except ValueError:
                return match.group(0)
        return ""  # highlighting (\H\ \N\), other formatting and charset switches

    return _escape_pattern(delims.escape).sub(one, text)


def _hex_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def python_codec(charset: str) -> str | None:
    """The Python codec for an MSH-18 value (table 0211), None when unknown."""
    return _CHARSETS.get(charset.strip().upper())


def decode(raw: bytes, default_charset: str = "utf-8") -> str:
    """`raw` as text with CR segment endings: BOM dropped, MSH-18 honoured.

    A line that does not start with a segment id and the field separator continues the
    segment before it (a sender put a line break inside OBX-5 or NTE text): it is joined
    with an escaped line break (\\.br\\) instead of becoming a bogus segment. Without an
    MSH-18, text that is not `default_charset` is read as Windows-1252.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if b"\x00" in raw:
        raise MessageError(
            "The message holds NUL bytes: not HL7 v2 ER7 text", ack_code="AR", location="MSH^1"
        )
    header = read_header(raw)
    codec = python_codec(header.charset) if header.charset else default_charset
    try:
        text = raw.decode(codec or default_charset)
    except UnicodeDecodeError as error:
        if header.charset:
            raise MessageError(
                f"The message is not valid {header.charset} (MSH-18): {error}",
                error_code="102",
                location="MSH^1^18",
            ) from None
        text = raw.decode("cp1252", errors="replace")
    except LookupError:
        text = raw.decode("utf-8", errors="replace")
    return normalise(text)


def normalise(text: str) -> str:
    """Segments ended by CR, continuation lines folded into the segment before them."""
    text = text.lstrip(_BOM + " \t\r\n\x0b").rstrip("\x1c\r\n ")
    sep = text[3:4] or "|"
    esc = _escape_char(text)
    segments: list[str] = []
    for line in _LINE.split(text):
        if not line.strip():
            continue
        if _starts_segment(line, sep) or not segments:
            segments.append(line)
        else:
            segments[-1] += f"{esc}.br{esc}{line}"
    return "\r".join(segments) + "\r"


def _escape_char(text: str) -> str:
    sep = text[3:4]
    chars = text[4:].split(sep, 1)[0] if sep else ""
    return chars[2] if len(chars) >= 3 else "\\"


def _starts_segment(line: str, sep: str) -> bool:
    return bool(_SEGMENT_ID.match(line)) and (len(line) == 3 or line[3] == sep)


# --- the parsed message --------------------------------------------------------------------


class Segment:
    """One segment: `field(n)` is field n as sent, escapes and all (MSH-1 is the separator)."""

    __slots__ = ("_split", "delims", "fields", "name", "occurrence")

    def __init__(self, text: str, occurrence: int, delims: Delimiters) -> None:
        self.fields = text.split(delims.field)
        self.name = self.fields[0]
        if self.name == "MSH":
            self.fields.insert(1, delims.field)
        self.occurrence = occurrence
        self.delims = delims
        self._split: dict[tuple[int, int], tuple[str, ...]] = {}  # maps read fields repeatedly

    def field(self, n: int) -> str:
        return self.fields[n] if n < len(self.fields) else ""

    def reps(self, n: int) -> list[str]:
        value = self.field(n)
        if not value or value == '""':
            return []
        return [r for r in value.split(self.delims.repetition) if r]

    def components(self, n: int, rep: int = 0) -> list[str]:
        """Field n (repetition `rep`) split into its components, unescaped."""
        found = self._split.get((n, rep))
        if found is None:
            reps = self.reps(n)
            found = tuple(components(reps[rep], self.delims)) if rep < len(reps) else ()
            self._split[(n, rep)] = found
        return list(found)

    def text(self, n: int, component: int = 1) -> str:
        """One component (1-based) of the first repetition, unescaped ("" when absent); its
        first subcomponent when it has several."""
        parts = self.components(n)
        return parts[component - 1].split(SUB, 1)[0] if component <= len(parts) else ""

    def location(self, n: int) -> str:
        return f"{self.name}^{self.occurrence}^{n}"

    def er7(self) -> str:
        fields = self.fields[:1] + self.fields[2:] if self.name == "MSH" else self.fields
        return self.delims.field.join(fields)


SUB = "\x1f"
"""Joins the subcomponents of a component `components` returns: a character no HL7 text
holds (an escaped `\\T\\` stays a plain `&` of the text, never a separator)."""


def components(value: str, delims: Delimiters) -> list[str]:
    """A repetition split on the message's own delimiters into components, then each
    subcomponent unescaped (subcomponents joined by `SUB`)."""
    out = []
    for comp in value.split(delims.component):
        if delims.subcomponent in comp:
            comp = SUB.join(unescape(s, delims) for s in comp.split(delims.subcomponent))
        else:
            comp = unescape(comp, delims)
        out.append("" if comp == '""' else comp)
    return out


@dataclass(frozen=True)
class Message:
    header: Header
    segments: tuple[Segment, ...]
    text: str

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)


def parse(text: str, strict_processing_id: bool = False) -> Message:
    """`text` (as `decode` returns it) split into segments; the header checked for support."""
    header = read_header(text)
    check_supported(header, strict_processing_id)
    delims = header.delimiters
    counts: dict[str, int] = {}
    segments = []
    for line in text.split("\r"):
        if not line:
            continue
        name = line[:3]
        if name in _BATCH_SEGMENTS:
            continue
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(line, counts[name], delims))
    return Message(header, tuple(segments), text)


# --- what the adapter accepts --------------------------------------------------------------


def check_supported(header: Header, strict_processing_id: bool = False) -> None:
    """Raise AR for a message type, event, control id, processing id or version this adapter
    refuses. MSH-10 is required (resends are recognised by it). MSH-11 is read leniently
    unless `strict_processing_id`: empty is P, and values outside table 0103 that routing
    networks put there are accepted; strict accepts P, T and D only."""
    if header.message_type not in SUPPORTED_EVENTS:
        raise MessageError(
            f"Message type '{header.message_type}' is not supported",
            ack_code="AR",
            error_code="200",
            location="MSH^1^9",
        )
    if header.trigger_event not in SUPPORTED_EVENTS[header.message_type]:
        raise MessageError(
            f"Event '{header.message_type}^{header.trigger_event}' is not supported",
            ack_code="AR",
            error_code="201",
            location="MSH^1^9",
        )
    if not header.control_id.strip():
        raise MessageError(
            "MSH-10 (message control id) is required",
            ack_code="AR",
            error_code="101",
            location="MSH^1^10",
        )
    if strict_processing_id and header.processing_id not in ("P", "T", "D"):
        raise MessageError(
            f"Processing id '{header.processing_id}' is not P, T or D",
            ack_code="AR",
            error_code="202",
            location="MSH^1^11",
        )
    library = hl7apy_version(header.version)
    structure = header.structure or _structure(header.message_type, header.trigger_event)
    if structure and structure not in _structures(library):
        known = _structure(header.message_type, header.trigger_event)
        if known and known not in _structures(library):
            raise MessageError(
                f"Message structure '{structure}' is not defined in v{library}",
                ack_code="AR",
                error_code="200",
                location="MSH^1^9",
            )


def hl7apy_version(version: str) -> str:
    """The hl7apy library that reads `version` (2.9 and later read as 2.8.2); AR 203 if none."""
    numbers = (
        tuple(int(p) for p in version.split("."))
        if re.fullmatch(r"2(\.\d{1,2}){1,2}", version)
        else ()
    )
    if not numbers or numbers < _OLDEST:
        raise MessageError(
            f"Version '{version}' is not supported (2.3 to 2.8.2; 2.9 as 2.8.2)",
            ack_code="AR",
            error_code="203",
            location="MSH^1^12",
        )
    if numbers > _NEWEST:
        return "2.8.2"
    known = sorted(tuple(int(p) for p in v.split(".")) for v in _libraries())
    return ".".join(map(str, max(v for v in known if v <= numbers)))


@cache
def _libraries() -> tuple[str, ...]:
    from hl7apy import SUPPORTED_LIBRARIES

    return tuple(v for v in SUPPORTED_LIBRARIES if tuple(map(int, v.split("."))) >= _OLDEST)


@cache
def _structures(version: str) -> frozenset[str]:
    return frozenset(load_library(version).MESSAGES)


def _structure(kind: str, event: str) -> str:
    from adapters.hl7v2.tables import STRUCTURES

    return STRUCTURES.get(f"{kind}^{event}", "")
