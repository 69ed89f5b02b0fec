"""FHIR -> HL7 v2.5.1 for outbound feeds: ADT^A08 from a Patient, ORU^R01 from a
DiagnosticReport with its Observations.

The segments follow the v2.5.1 message structures ADT_A01 (MSH EVN PID PV1; A08 "update
patient information" uses it) and ORU_R01 (MSH PID OBR OBX...). Only what the resources
say is sent; fields we have no value for stay empty. Messages are sent in original
acknowledgement mode (MSH-15/16 empty), UTF-8 (MSH-18).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.hl7v2.ack import ENCODING_CHARS, FIELD_SEP, VERSION, Escaper, control_id, timestamp

CHARSET = "UNICODE UTF-8"
GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}
CODE_SYSTEMS = {  # HL7 table 0396 names of the code systems we meet
    "http://loinc.org": "LN",
    "http://snomed.info/sct": "SCT",
    "http://unitsofmeasure.org": "UCUM",
    "http://hl7.org/fhir/sid/icd-10": "I10",
}
REPORT_STATUS = {
    "final": "F",
    "preliminary": "P",
    "amended": "C",
    "corrected": "C",
    "cancelled": "X",
    "registered": "I",
    "partial": "P",
}
OBSERVATION_STATUS = {
    "final": "F",
    "preliminary": "P",
    "amended": "C",
    "corrected": "C",
    "cancelled": "X",
    "registered": "I",
    "entered-in-error": "W",
}
_esc = Escaper(FIELD_SEP, ENCODING_CHARS)


@dataclass(frozen=True)
class Envelope:
    """Who sends to whom (MSH-3..6) and how identifier systems map to assigning authorities."""

    sending_application: str = "FHIR-SERVER"
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    authorities: Mapping[str, str] = field(default_factory=dict)  # system URI -> HL7 authority


def adt_a08(patient: dict[str, Any], envelope: Envelope) -> str:
    """ADT^A08 (update patient information) carrying `patient`."""
    now = timestamp()
    return _message(
        [
            _msh(envelope, "ADT^A08^ADT_A01", now),
            _segment("EVN", "A08", now),
            _pid(patient, envelope),
            _segment("PV1", "1", "N"),  # PV1 is required in ADT_A01; N: not applicable
        ]
    )


def oru_r01(
    report: dict[str, Any],
    patient: dict[str, Any] | None,
    observations: list[dict[str, Any]],
    envelope: Envelope,
) -> str:
    """ORU^R01 (unsolicited observation result): one OBR for `report`, one OBX per result."""
    segments = [_msh(envelope, "ORU^R01^ORU_R01", timestamp())]
    if patient is not None:
        segments.append(_pid(patient, envelope))
    effective = _ts(
        report.get("effectiveDateTime") or (report.get("effectivePeriod") or {}).get("start")
    )
    segments.append(
        _segment(
            "OBR",
            "1",
            "",
            _esc(report.get("id", "")),
            _cwe(report.get("code")),
            "",
            "",
            effective,
            *[""] * 14,
            _ts(report.get("issued")),
            "",
            "",
            REPORT_STATUS.get(report.get("status", ""), ""),
        )
    )
    for number, observation in enumerate(observations, start=1):
        segments.append(_obx(number, observation))
    return _message(segments)


def _msh(envelope: Envelope, message_type: str, now: str) -> str:
    return FIELD_SEP.join(
        [
            "MSH",
            ENCODING_CHARS,
            envelope.sending_application,
            envelope.sending_facility,
            envelope.receiving_application,
            envelope.receiving_facility,
            now,
            "",
            message_type,
            control_id(),
            "P",
            VERSION,
            "",
            "",
            "",
            "",
            "",
            CHARSET,
        ]
    )


def _pid(patient: dict[str, Any], envelope: Envelope) -> str:
    identifiers = [_cx(i, envelope) for i in patient.get("identifier") or [] if i.get("value")]
    identifiers = identifiers or [f"{_esc(patient.get('id', ''))}^^^FHIR^RI"]
    names = [_xpn(n) for n in patient.get("name") or []]
    addresses = [_xad(a) for a in patient.get("address") or []]
    phones = [
        _esc(t.get("value", ""))
        for t in patient.get("telecom") or []
        if t.get("system") in (None, "phone") and t.get("value")
    ]
    return _segment(
        "PID",
        "1",
        "",
        "~".join(identifiers),
        "",
        "~".join(names),
        "",
        _ts(patient.get("birthDate")),
        GENDER.get(patient.get("gender", ""), ""),
        "",
        "",
        "~".join(addresses),
        "",
        "~".join(phones),
    )


def _obx(number: int, observation: dict[str, Any]) -> str:
    kind, value, units = _value(observation)
    ranges = observation.get("referenceRange") or []
    interpretation = (observation.get("interpretation") or [{}])[0]
    flag = ((interpretation.get("coding") or [{}])[0]).get("code", "")
    effective = _ts(observation.get("effectiveDateTime") or observation.get("issued"))
    return _segment(
        "OBX",
        str(number),
        kind,
        _cwe(observation.get("code")),
        "",
        value,
        units,
        _range(ranges[0]) if ranges else "",
        _esc(flag),
        "",
        "",
        OBSERVATION_STATUS.get(observation.get("status", ""), ""),
        "",
        "",
        effective,
    )


def _value(observation: dict[str, Any]) -> tuple[str, str, str]:
    """OBX-2 value type, OBX-5 value, OBX-6 units."""
    if "valueQuantity" in observation:
        quantity = observation["valueQuantity"]
        unit = quantity.get("code") or quantity.get("unit") or ""
        units = f"{_esc(unit)}^{_esc(quantity.get('unit', unit))}^UCUM" if unit else ""
        return "NM", _number(quantity.get("value")), units
    if "valueCodeableConcept" in observation:
        return "CWE", _cwe(observation["valueCodeableConcept"]), ""
    if "valueDateTime" in observation:
        return "DTM", _ts(observation["valueDateTime"]), ""
    for key in ("valueString", "valueBoolean", "valueInteger"):
        if key in observation:
            return "ST", _esc(str(observation[key])), ""
    return "ST", "", ""


def _range(reference: dict[str, Any]) -> str:
    if reference.get("text"):
        return _esc(reference["text"])
    low = _number((reference.get("low") or {}).get("value"))
    high = _number((reference.get("high") or {}).get("value"))
    return f"{low}-{high}" if low or high else ""


def _cx(identifier: dict[str, Any], envelope: Envelope) -> str:
    system = identifier.get("system", "")
    authority = envelope.authorities.get(system) or (f"&{_esc(system)}&URI" if system else "")
    kind = ((identifier.get("type") or {}).get("coding") or [{}])[0].get("code", "")
    return f"{_esc(identifier['value'])}^^^{authority}^{_esc(kind)}".rstrip("^")


def _xpn(name: dict[str, Any]) -> str:
    given = name.get("given") or []
    parts = [
        name.get("family", ""),
        given[0] if given else "",
        " ".join(given[1:]),
        " ".join(name.get("suffix") or []),
        " ".join(name.get("prefix") or []),
    ]
    return "^".join(_esc(p) for p in parts).rstrip("^")


def _xad(address: dict[str, Any]) -> str:
    lines = address.get("line") or []
    parts = [
        lines[0] if lines else "",
        " ".join(lines[1:]),
        address.get("city", ""),
        address.get("state", ""),
        address.get("postalCode", ""),
        address.get("country", ""),
    ]
    return "^".join(_esc(p) for p in parts).rstrip("^")


def _cwe(concept: dict[str, Any] | None) -> str:
    if not concept:
        return ""
    coding = (concept.get("coding") or [{}])[0]
    system = coding.get("system", "")
    parts = [
        coding.get("code", ""),
        coding.get("display") or concept.get("text", ""),
        CODE_SYSTEMS.get(system, system),
    ]
    return "^".join(_esc(p) for p in parts).rstrip("^")


def _number(value: Any) -> str:
    return "" if value is None else format(value, "g") if isinstance(value, float) else str(value)


def _ts(value: str | None) -> str:
    """FHIR date/dateTime/instant -> HL7 DTM (YYYYMMDDHHMMSS[.S][+ZZZZ])."""
    if not value:
        return ""
    match = re.fullmatch(
        r"(\d{4})(?:-(\d\d)(?:-(\d\d)(?:T(\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?"
        r"(Z|[+-]\d\d:\d\d)?)?)?)?",
        value,
    )
    if not match:
        return ""
    *parts, fraction, zone = match.groups()
    text = "".join(p for p in parts if p) + (fraction or "")
    if zone:
        text += "+0000" if zone == "Z" else zone.replace(":", "")
    return text


def _segment(name: str, *fields: str) -> str:
    return FIELD_SEP.join((name, *fields)).rstrip(FIELD_SEP)


def _message(segments: list[str]) -> str:
    return "\r".join(segments) + "\r"
