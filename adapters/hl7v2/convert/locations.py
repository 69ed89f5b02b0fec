"""Which HL7 field a FHIR element of a converted resource came from, for error locations.

When the FHIR service refuses an entry of a converted Bundle (validation names it as
`Bundle.entry[N]: Type.element...`), the ACK must point the sender at the segment and field
that caused it (ERR-2, e.g. `OBX^2^3`), not at an internal error. Each entry records the
segment it was made from (`BundleBuilder.source`); this table, read from the IG's segment
maps, gives the field of the element.
"""

from __future__ import annotations

import re

FIELDS: dict[str, dict[str, int]] = {
    "PID": {
        "identifier": 3,
        "name": 5,
        "birthDate": 7,
        "gender": 8,
        "address": 11,
        "telecom": 13,
        "maritalStatus": 16,
        "deceasedDateTime": 29,
        "deceasedBoolean": 30,
    },
    "PD1": {"generalPractitioner": 4},
    "PV1": {
        "class": 2,
        "location": 3,
        "participant": 7,
        "identifier": 19,
        "hospitalization": 36,
        "period": 44,
    },
    "OBX": {
        "code": 3,
        "value": 5,
        "referenceRange": 7,
        "interpretation": 8,
        "status": 11,
        "effectiveDateTime": 14,
        "performer": 16,
    },
    "OBR": {
        "identifier": 3,
        "code": 4,
        "effectiveDateTime": 7,
        "requester": 16,
        "issued": 22,
        "status": 25,
    },
    "ORC": {"identifier": 2, "status": 5, "authoredOn": 9, "requester": 12},
    "SPM": {"identifier": 2, "type": 4, "collection": 17, "receivedTime": 18},
    "RXA": {
        "occurrenceDateTime": 3,
        "vaccineCode": 5,
        "doseQuantity": 6,
        "primarySource": 9,
        "reportOrigin": 9,
        "performer": 10,
        "lotNumber": 15,
        "expirationDate": 16,
        "manufacturer": 17,
        "status": 20,
    },
    "SCH": {
        "identifier": 2,
        "reasonCode": 7,
        "appointmentType": 8,
        "minutesDuration": 9,
        "start": 11,
        "end": 11,
        "status": 25,
    },
    "TXA": {
        "type": 2,
        "date": 6,
        "author": 9,
        "authenticator": 10,
        "masterIdentifier": 12,
        "docStatus": 17,
        "securityLabel": 18,
        "status": 19,
        "description": 25,
    },
    "AL1": {"category": 2, "code": 3, "criticality": 4, "reaction": 5, "onsetDateTime": 6},
    "DG1": {"code": 3, "onsetDateTime": 5, "recordedDate": 19},
    "PR1": {"code": 3, "performedDateTime": 5, "performer": 11, "reasonCode": 15},
    "IN1": {"identifier": 2, "payor": 3, "period": 12, "type": 15, "relationship": 17},
    "NK1": {"name": 2, "relationship": 3, "address": 4, "telecom": 5},
    "MSH": {"recorded": 7, "eventCoding": 9, "source": 3, "destination": 5},
}

_ENTRY = re.compile(r"Bundle\.entry\[(\d+)\][^:]*:\s*([A-Za-z]+)\.([A-Za-z]+)")


def locate(sources: tuple[str, ...], diagnostics: str) -> str:
    """`SEG^occurrence^field` (or `SEG^occurrence`) for a refusal of the FHIR service that
    names an entry of the converted Bundle; "" when it names none."""
    found = _ENTRY.search(diagnostics)
    if found is None or int(found.group(1)) >= len(sources):
        return ""
    source = sources[int(found.group(1))]
    if not source:
        return ""
    element = found.group(3)
    fields = FIELDS.get(source.split("^")[0], {})
    field = fields.get(element) or next(
        (n for name, n in fields.items() if element.startswith(name)), None
    )
    return f"{source}^{field}" if field else source
