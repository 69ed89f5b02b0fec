"""Which HL7 v2 message families and events the adapter accepts, and what each becomes.

This is the one list: `message.check_supported` refuses what is not in it, the v2-to-FHIR
converter dispatches on it (`convert.messages.MAPS` has one map per family), and the
README's coverage table and its test read it. Each family names the IG message map it
follows (`mappings/messages/` of the HL7 v2-to-FHIR IG) and the resource types a message
of it produces besides the MessageHeader, Provenance and Binary every message gets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One message type (MSH-9.1): its accepted events, IG map and resulting resources."""

    message_type: str
    events: frozenset[str]
    ig_map: str
    resources: tuple[str, ...]


def _family(kind: str, events: str, ig_map: str, resources: str) -> Family:
    return Family(kind, frozenset(events.split()), ig_map, tuple(resources.split()))


FAMILIES: tuple[Family, ...] = (
    _family(
        "ADT",
        "A01 A02 A03 A04 A05 A06 A07 A08 A11 A12 A13 A28 A31 A40",
        "ADT_A01, ADT_A40",
        "Patient Encounter",
    ),
    _family("ORU", "R01", "ORU_R01", "Patient ServiceRequest DiagnosticReport Observation"),
    _family("ORM", "O01", "ORM_O01", "Patient ServiceRequest"),
    _family("OML", "O21", "OML_O21", "Patient ServiceRequest Specimen"),
    _family("VXU", "V04", "VXU_V04", "Patient Immunization"),
    _family("SIU", "S12 S13 S14 S15", "SIU_S12", "Patient Appointment"),
    _family("MDM", "T02", "MDM_T02", "Patient DocumentReference Binary"),
)

SUPPORTED_EVENTS: dict[str, frozenset[str]] = {f.message_type: f.events for f in FAMILIES}
"""Message type -> the trigger events accepted for it."""


def family(message_type: str) -> Family | None:
    return next((f for f in FAMILIES if f.message_type == message_type), None)
