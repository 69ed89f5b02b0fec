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


_ADT_EVENTS = (
    "A01 A02 A03 A04 A05 A06 A07 A08 A09 A10 A11 A12 A13 A14 A15 A16 A17 A21 A22 A23 A25 "
    "A26 A27 A28 A29 A31 A32 A33 A38 A40 A41 A45 A47 A60"
)
_ADMINISTRATION = (
    "Patient Encounter Account RelatedPerson AllergyIntolerance Condition Procedure Coverage"
)

FAMILIES: tuple[Family, ...] = (
    _family("ADT", _ADT_EVENTS, "ADT_A01, ADT_A40", f"{_ADMINISTRATION} Observation"),
    _family("BAR", "P01 P02 P12", "BAR_P01, BAR_P02, BAR_P12", _ADMINISTRATION),
    _family("DFT", "P03 P11", "DFT_P03", f"{_ADMINISTRATION} ChargeItem"),
    _family(
        "MDM",
        "T01 T02 T03 T04 T05 T06 T07 T08 T09 T10 T11",
        "MDM_T02",
        "Patient ServiceRequest DocumentReference Binary",
    ),
    _family("OMG", "O19", "OMG_O19", "Patient ServiceRequest"),
    _family("OML", "O21", "OML_O21", "Patient ServiceRequest Specimen"),
    _family("ORM", "O01", "ORM_O01", "Patient ServiceRequest Observation"),
    _family("ORU", "R01", "ORU_R01", "Patient ServiceRequest DiagnosticReport Observation"),
    _family(
        "OUL",
        "R22 R23 R24",
        "OUL_R22",
        "Patient ServiceRequest DiagnosticReport Observation Specimen",
    ),
    _family("PPR", "PC1 PC2 PC3", "PPR_PC1", "Patient Condition"),
    _family("RDE", "O11 O25", "RDE_O11", "Patient MedicationRequest Observation"),
    _family("RDS", "O13", "RDS_O13", "Patient MedicationRequest MedicationDispense"),
    _family("REF", "I12 I14", "REF_I12", "Patient ServiceRequest"),
    _family(
        "SIU",
        "S12 S13 S14 S15 S16 S17 S18 S19 S20 S21 S22 S23 S24 S26",
        "SIU_S12",
        "Patient Appointment Observation",
    ),
    _family("VXU", "V04", "VXU_V04", "Patient Immunization ServiceRequest Observation"),
)
"""Every message also gets a MessageHeader, a Provenance, the Binary holding the message,
an Organization for MSH-4 and a Device for MSH-3."""

SUPPORTED_EVENTS: dict[str, frozenset[str]] = {f.message_type: f.events for f in FAMILIES}
"""Message type -> the trigger events accepted for it."""


def family(message_type: str) -> Family | None:
    return next((f for f in FAMILIES if f.message_type == message_type), None)


def coverage_table() -> str:
    """The README's coverage table (Markdown), one row per family, from `FAMILIES`.
    (*MessageHeader, Provenance, the message as a Binary, MSH-4 as an Organization and
    MSH-3 as a Device.)"""
    lines = [
        "| Message | Events | IG message map | Resources (besides the message's own*) |",
        "|---|---|---|---|",
    ]
    for f in FAMILIES:
        events = ", ".join(sorted(f.events))
        lines.append(f"| {f.message_type} | {events} | {f.ig_map} | {', '.join(f.resources)} |")
    return "\n".join(lines) + "\n"
