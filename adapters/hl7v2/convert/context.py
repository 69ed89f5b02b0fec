"""What the maps of one message share: the options, the message, the Bundle being built."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.hl7v2 import datatypes as dt
from adapters.hl7v2.bundle import BundleBuilder, stable_id
from adapters.hl7v2.message import Header, Message, MessageError, Segment, components

V2_MESSAGE = "x-application/hl7-v2+er7"


EVENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0003"


PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"


OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


ATTACHMENT_EXT = (
    "https://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"
)


@dataclass(frozen=True)
class ConvertOptions:
    timezone: str = "UTC"  # the zone of a TS/DTM sent without an offset
    identifier_systems: Mapping[str, str] = field(default_factory=dict)  # authority -> system
    strict_processing_id: bool = False  # MSH-11 P, T or D only (else: empty is P, any accepted)


@dataclass(frozen=True)
class Conversion:
    bundle: dict[str, Any]
    header: Header
    patient_key: str | None  # "system|value" of the patient the message is about
    merged_keys: tuple[str, ...] = ()  # "system|value" of the patients an A40 merges
    left_out: tuple[MessageError, ...] = ()  # optional segments that could not be mapped
    sources: tuple[str, ...] = ()  # per bundle entry, the segment it came from ("OBX^2")


@cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise MessageError(
            f"Unknown time zone '{name}' in the conversion options", ack_code="AE"
        ) from None


class Context:
    """What the maps of one message share: the message, the options and the entries."""

    def __init__(self, message: Message, options: ConvertOptions, payload: bytes) -> None:
        self.message = message
        self.header = message.header
        self.zone = _zone(options.timezone)
        self.systems = options.identifier_systems
        self.entries = BundleBuilder()
        self.payload = payload
        self.sender = f"{self.header.sending_application}|{self.header.sending_facility}"
        self.default_system = sender_system(self.header, self.systems)
        self.patient: str | None = None
        self.patient_key: str | None = None
        self.merged_keys: list[str] = []  # patients an A40 merges into `patient_key`
        self.encounter: str | None = None
        self.account: str | None = None  # the PID-18 Account (or one a GT1 made)
        self.focus: list[str] = []
        self.left_out: list[MessageError] = []

    def at(self, seg: Segment) -> None:
        """Entries made from now on come from `seg` (so an error in one can name it)."""
        self.entries.source = f"{seg.name}^{seg.occurrence}"

    @contextmanager
    def optional(self, seg: Segment) -> Iterator[None]:
        """Map `seg` inside this block; if its content cannot be mapped (AE), leave the
        segment out and note why, instead of refusing the whole message."""
        try:
            yield
        except MessageError as error:
            if error.ack_code != "AE":
                raise
            self.left_out.append(
                MessageError(
                    f"{seg.name} segment {seg.occurrence} left out: {error.text}",
                    error_code=error.error_code,
                    location=error.location or f"{seg.name}^{seg.occurrence}",
                )
            )

    def time(self, value: str) -> str | None:
        return dt.date_time(value, self.zone) if value else None

    def identifier(self, comps: list[str], location: str) -> dict[str, Any] | None:
        """CX -> Identifier; without an assigning authority, the sender's system (never none:
        an identifier without a system would match the same value under every system)."""
        found = dt.identifier(comps, self.systems)
        if found is not None and not found.get("system"):
            if not self.default_system:
                raise MessageError(
                    f"Identifier '{found['value']}' names no assigning authority and the sender "
                    "(MSH-3, MSH-4) is empty: no identifier system can be derived",
                    error_code="101",
                    location=location,
                )
            found["system"] = self.default_system
        return found

    def own_system(self, kind: str) -> str:
        """An identifier system for things the sender numbers without naming an authority."""
        h = self.header
        name = ".".join(
            p for p in (h.sending_application.split("^")[0], h.sending_facility.split("^")[0]) if p
        )
        if not name:
            raise MessageError(
                f"MSH-3 and MSH-4 are empty: no identifier system can be derived for a {kind}",
                error_code="101",
                location="MSH^1^3",
            )
        return f"urn:id:{quote(name, safe='.-_')}:{kind}"


def sender_system(header: Header, systems: Mapping[str, str]) -> str:
    """The identifier system of the sender: its facility (MSH-4) or else its application
    (MSH-3) as an assigning authority (configured systems first); "" when both are empty."""
    for hd in (header.sending_facility, header.sending_application):
        parts = hd.split("^")
        found = dt.authority_system(
            parts[0],
            parts[1] if len(parts) > 1 else "",
            parts[2] if len(parts) > 2 else "",
            systems,
        )
        if found:
            return found
    return ""


def rep_components(rep: str, seg: Segment) -> list[str]:
    return components(rep, seg.delims)


def required_segment(ctx: Context, name: str) -> Segment:
    seg = ctx.message.first(name)
    if seg is None:
        raise MessageError(f"The message has no {name} segment", error_code="100", location=name)
    return seg


def own_id(ctx: Context, kind: str, key: str) -> dict[str, Any]:
    return {"system": ctx.own_system(kind), "value": stable_id(key)}


def with_identifier(resource: dict[str, Any], ident: dict[str, Any]) -> dict[str, Any]:
    resource.setdefault("identifier", []).append(ident)
    return resource
