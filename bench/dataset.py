"""Deterministic synthetic FHIR R4 data for the benchmarks.

`transaction_bundles(n, seed)` returns transaction Bundles holding exactly `n` resources:
one group per patient (Patient, Encounters, Observations, Conditions). Every resource is
POSTed with a `urn:uuid:` fullUrl and refers to its patient (and encounter) by that urn,
so each group resolves inside its own bundle. The same seed always gives the same bytes.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

Resource = dict[str, Any]

MRN_SYSTEM = "http://hospital.example.org/fhir/sid/mrn"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"

# Fixed "today" so the data never depends on the clock.
EPOCH = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)

FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Nguyen",
    "Kowalski",
    "Müller",
    "Dubois",
    "Rossi",
    "Okafor",
    "Tanaka",
    "Silva",
    "Novak",
]
GIVEN = {
    "female": [
        "Mary",
        "Patricia",
        "Jennifer",
        "Linda",
        "Elizabeth",
        "Barbara",
        "Susan",
        "Jessica",
        "Sarah",
        "Karen",
        "Amara",
        "Yuki",
        "Sofia",
        "Chloé",
        "Ana",
    ],
    "male": [
        "James",
        "Robert",
        "John",
        "Michael",
        "David",
        "William",
        "Richard",
        "Joseph",
        "Thomas",
        "Charles",
        "Chinedu",
        "Hiro",
        "Mateo",
        "Lukas",
        "José",
    ],
}
STREETS = [
    "Main St",
    "Oak Ave",
    "Maple Dr",
    "Cedar Ln",
    "Elm St",
    "Pine Rd",
    "Lake View Blvd",
    "Hillcrest Ave",
    "Sunset Blvd",
    "River Rd",
]
CITIES = [
    ("Boston", "MA", "021"),
    ("Springfield", "IL", "627"),
    ("Austin", "TX", "787"),
    ("Portland", "OR", "972"),
    ("Madison", "WI", "537"),
    ("Denver", "CO", "802"),
    ("Raleigh", "NC", "276"),
    ("Tucson", "AZ", "857"),
]

# (LOINC code, display, UCUM code, unit, low, high, decimals)
VITALS = [
    ("8867-4", "Heart rate", "/min", "beats/minute", 52, 110, 0),
    ("9279-1", "Respiratory rate", "/min", "breaths/minute", 11, 24, 0),
    ("8310-5", "Body temperature", "Cel", "C", 36.0, 38.6, 1),
    ("29463-7", "Body weight", "kg", "kg", 45, 130, 1),
    ("8302-2", "Body height", "cm", "cm", 150, 198, 1),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", "kg/m2", 17, 40, 1),
    ("2708-6", "Oxygen saturation in Arterial blood", "%", "%", 88, 100, 0),
]
LABS = [
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", "mg/dL", 65, 240, 0),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 9.5, 17.5, 1),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0.5, 2.4, 2),
    ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 3.2, 5.6, 1),
    ("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 131, 148, 0),
    ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 120, 290, 0),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 4.6, 10.5, 1),
]
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
SYSTOLIC = ("8480-6", "Systolic blood pressure", 95, 175)
DIASTOLIC = ("8462-4", "Diastolic blood pressure", 55, 105)

CONDITIONS = [
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("13645005", "Chronic obstructive lung disease"),
    ("55822004", "Hyperlipidemia"),
    ("35489007", "Depressive disorder"),
    ("49436004", "Atrial fibrillation"),
    ("40055000", "Chronic sinusitis"),
]
ENCOUNTER_TYPES = [
    ("AMB", "ambulatory", "185349003", "Encounter for check up"),
    ("AMB", "ambulatory", "390906007", "Follow-up encounter"),
    ("EMER", "emergency", "50849002", "Emergency room admission"),
    ("IMP", "inpatient encounter", "32485007", "Hospital admission"),
]


@dataclass
class PatientGroup:
    """One patient and the resources that refer to it, as (fullUrl, resource) pairs."""

    entries: list[tuple[str, Resource]] = field(default_factory=list)

    def add(self, rng: random.Random, resource: Resource) -> str:
        full_url = f"urn:uuid:{new_uuid(rng)}"
        self.entries.append((full_url, resource))
        return full_url


def new_uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def coding(system: str, code: str, display: str) -> Resource:
    return {"system": system, "code": code, "display": display}


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def mrn(index: int) -> str:
    """The medical record number of the index-th generated patient."""
    return f"MRN{index:08d}"


def patient(rng: random.Random, index: int) -> Resource:
    """A Patient with an MRN identifier, a name, a birth date, an address and a phone."""
    gender = rng.choice(["female", "male"])
    city, state, zip_prefix = rng.choice(CITIES)
    birth = date(1930, 1, 1) + timedelta(days=rng.randrange(365 * 90))
    return {
        "resourceType": "Patient",
        "identifier": [
            {
                "use": "usual",
                "type": {
                    "coding": [
                        coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical record number",
                        )
                    ]
                },
                "system": MRN_SYSTEM,
                "value": mrn(index),
            }
        ],
        "active": True,
        "name": [
            {
                "use": "official",
                "family": rng.choice(FAMILY),
                "given": rng.sample(GIVEN[gender], k=rng.choice([1, 1, 2])),
            }
        ],
        "telecom": [
            {
                "system": "phone",
                "use": "home",
                "value": f"555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}",
            }
        ],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "address": [
            {
                "use": "home",
                "line": [f"{rng.randrange(1, 9999)} {rng.choice(STREETS)}"],
                "city": city,
                "state": state,
                "postalCode": f"{zip_prefix}{rng.randrange(100):02d}",
                "country": "US",
            }
        ],
    }


def encounter(rng: random.Random, subject: str, start: datetime) -> Resource:
    class_code, class_display, type_code, type_display = rng.choice(ENCOUNTER_TYPES)
    hours = 72 if class_code == "IMP" else 1
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": coding(ACT_CODE, class_code, class_display),
        "type": [{"coding": [coding(SNOMED, type_code, type_display)]}],
        "subject": {"reference": subject},
        "period": {
            "start": instant(start),
            "end": instant(start + timedelta(hours=rng.uniform(0.3, hours))),
        },
    }


def quantity(value: float, unit: str, code: str) -> Resource:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def observation(rng: random.Random, subject: str, context: str, when: datetime) -> Resource:
    """A vital sign, a blood pressure panel or a lab result, with a UCUM valueQuantity."""
    kind = rng.random()
    category = "laboratory" if kind < 0.4 else "vital-signs"
    resource: Resource = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [coding(OBS_CATEGORY, category, category.replace("-", " ").title())]}
        ],
        "subject": {"reference": subject},
        "encounter": {"reference": context},
        "effectiveDateTime": instant(when),
        "issued": instant(when + timedelta(minutes=rng.randrange(5, 240))),
    }
    if kind >= 0.85:
        resource["code"] = {"coding": [coding(LOINC, *BP_PANEL)], "text": "Blood pressure"}
        resource["component"] = [
            {
                "code": {"coding": [coding(LOINC, code, display)]},
                "valueQuantity": quantity(rng.randrange(low, high), "mmHg", "mm[Hg]"),
            }
            for code, display, low, high in (SYSTOLIC, DIASTOLIC)
        ]
        return resource
    table = LABS if category == "laboratory" else VITALS
    code, display, ucum, unit, low, high, decimals = rng.choice(table)
    value = round(rng.uniform(low, high), decimals)
    resource["code"] = {"coding": [coding(LOINC, code, display)], "text": display}
    resource["valueQuantity"] = quantity(int(value) if decimals == 0 else value, unit, ucum)
    return resource


def condition(rng: random.Random, subject: str, context: str, when: datetime) -> Resource:
    code, display = rng.choice(CONDITIONS)
    return {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [coding(CLINICAL_STATUS, "active", "Active")]},
        "verificationStatus": {"coding": [coding(VERIFICATION, "confirmed", "Confirmed")]},
        "category": [
            {"coding": [coding(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")]}
        ],
        "code": {"coding": [coding(SNOMED, code, display)], "text": display},
        "subject": {"reference": subject},
        "encounter": {"reference": context},
        "onsetDateTime": instant(when - timedelta(days=rng.randrange(30, 3650))),
        "recordedDate": instant(when),
    }


def patient_group(rng: random.Random, index: int) -> PatientGroup:
    """Patient first, then its encounters, then what happened during each encounter."""
    group = PatientGroup()
    subject = group.add(rng, patient(rng, index))
    for _ in range(rng.choice([1, 1, 2, 3])):
        start = EPOCH - timedelta(days=rng.randrange(1, 1800), minutes=rng.randrange(1440))
        context = group.add(rng, encounter(rng, subject, start))
        for _ in range(rng.randrange(2, 7)):
            when = start + timedelta(minutes=rng.randrange(5, 60))
            group.add(rng, observation(rng, subject, context, when))
        if rng.random() < 0.4:
            group.add(rng, condition(rng, subject, context, start))
    return group


def patient_groups(n_resources: int, seed: int) -> Iterator[PatientGroup]:
    """Groups totalling exactly `n_resources`; the last one is cut short if needed."""
    rng = random.Random(seed)
    remaining, index = n_resources, 0
    while remaining > 0:
        group = patient_group(rng, index)
        # Entries only refer backwards, so cutting off the tail keeps every reference valid.
        del group.entries[remaining:]
        remaining -= len(group.entries)
        index += 1
        yield group


def transaction(groups: list[PatientGroup]) -> Resource:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
            for group in groups
            for full_url, resource in group.entries
        ],
    }


def transaction_bundles(
    n_resources: int, seed: int = 42, bundle_size: int = 100
) -> Iterator[Resource]:
    """Transaction Bundles of about `bundle_size` entries; a patient group is never split."""
    pending: list[PatientGroup] = []
    count = 0
    for group in patient_groups(n_resources, seed):
        pending.append(group)
        count += len(group.entries)
        if count >= bundle_size:
            yield transaction(pending)
            pending, count = [], 0
    if pending:
        yield transaction(pending)


def patient_template() -> Resource:
    """A Patient for the create/update workloads; `__MRN__` is replaced per request."""
    resource = patient(random.Random(0), 0)
    resource["identifier"][0]["value"] = "__MRN__"
    return resource
