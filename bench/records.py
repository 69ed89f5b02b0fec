"""Patient records shaped like real synthetic-patient bundles, for the ingest benchmark.

The light bench dataset (bench/dataset.py) has small resources only. Real records, as
synthetic-patient generators write them, are heavier, and that is where ingest slows down:

- a first transaction with the provider directory: Organizations and Practitioners, each
  `PUT Type?identifier=system|value` (a conditional update, so loading it twice is harmless);
- one transaction per patient whose resources point at the directory by conditional
  references (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999...`);
- per encounter: the Encounter, vital-sign Observations (the blood pressure panel with
  components), Conditions, Procedures, MedicationRequests, Immunizations, a DiagnosticReport
  whose note is a base64 `presentedForm`, a DocumentReference with a base64 clinical note,
  a Claim and its ExplanationOfBenefit (the largest resources of such records);
- patients with long histories: a few bundles of about 2,000 entries.

`record_bundles(patients, seed)` returns the directory bundle first, then one bundle per
patient; the same seed always gives the same bytes.
"""

from __future__ import annotations

import base64
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.dataset import FAMILY, GIVEN, LOINC, SNOMED, UCUM

Resource = dict[str, Any]

NPI = "http://hl7.org/fhir/sid/us-npi"
ORG_SYSTEM = "https://example.org/synthetic/organizations"
MRN = "http://hospital.example.org/fhir/sid/mrn"
SSN = "http://hl7.org/fhir/sid/us-ssn"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
CLAIM_TYPE = "http://terminology.hl7.org/CodeSystem/claim-type"
EPOCH = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
ORGANIZATIONS = 20
PRACTITIONERS = 60
LONG_HISTORY_EVERY = 25  # every 25th patient has about 2,000 entries

_NOTE = (
    "Patient seen for follow-up. Reports feeling well, no chest pain, no shortness of breath. "
    "Medications reviewed and reconciled. Blood pressure at goal. Continue current plan, "
    "diet and exercise counselling given, return in three months or sooner if symptoms. "
)


def _id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _coding(system: str, code: str, display: str) -> Resource:
    return {"system": system, "code": code, "display": display}


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _given(index: int) -> str:
    names = GIVEN["female" if index % 2 else "male"]
    return names[index % len(names)]


def _npi(index: int) -> str:
    return f"{9_999_000_000 + index * 7:010d}"


def directory_bundle() -> Resource:
    """Organizations and Practitioners, each a conditional update on its identifier."""
    entries = []
    for i in range(ORGANIZATIONS):
        value = f"org-{i:04d}"
        entries.append(
            _conditional_put(
                "Organization",
                ORG_SYSTEM,
                value,
                {
                    "resourceType": "Organization",
                    "identifier": [{"system": ORG_SYSTEM, "value": value}],
                    "active": True,
                    "type": [
                        {
                            "coding": [
                                _coding(
                                    "http://terminology.hl7.org/CodeSystem/organization-type",
                                    "prov",
                                    "Healthcare Provider",
                                )
                            ]
                        }
                    ],
                    "name": f"Synthetic General Hospital {i}",
                    "telecom": [{"system": "phone", "value": f"555-01{i:02d}"}],
                    "address": [
                        {
                            "line": [f"{100 + i} Main Street"],
                            "city": "Springfield",
                            "state": "MA",
                            "postalCode": "01101",
                            "country": "US",
                        }
                    ],
                },
            )
        )
    for i in range(PRACTITIONERS):
        entries.append(
            _conditional_put(
                "Practitioner",
                NPI,
                _npi(i),
                {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": NPI, "value": _npi(i)}],
                    "active": True,
                    "name": [
                        {
                            "family": FAMILY[i % len(FAMILY)],
                            "given": [_given(i)],
                            "prefix": ["Dr."],
                        }
                    ],
                    "gender": "female" if i % 2 else "male",
                    "address": [
                        {
                            "line": [f"{200 + i} Clinic Road"],
                            "city": "Springfield",
                            "state": "MA",
                            "country": "US",
                        }
                    ],
                },
            )
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _conditional_put(type: str, system: str, value: str, resource: Resource) -> Resource:
    return {
        "resource": resource,
        "request": {"method": "PUT", "url": f"{type}?identifier={system}|{value}"},
    }


class _Record:
    """One patient's transaction Bundle under construction."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.entries: list[Resource] = []

    def add(self, resource: Resource) -> str:
        full_url = f"urn:uuid:{_id(self.rng)}"
        self.entries.append(
            {
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": "POST", "url": resource["resourceType"]},
            }
        )
        return full_url

    def bundle(self) -> Resource:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}


def _patient(rng: random.Random, index: int) -> Resource:
    gender = rng.choice(("male", "female"))
    born = EPOCH - timedelta(days=rng.randint(20 * 365, 90 * 365))
    return {
        "resourceType": "Patient",
        "meta": {"profile": [f"{US_CORE}/us-core-patient"]},
        "extension": [
            {
                "url": f"{US_CORE}/us-core-race",
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": _coding(
                            "urn:oid:2.16.840.1.113883.6.238", "2106-3", "White"
                        ),
                    },
                    {"url": "text", "valueString": "White"},
                ],
            },
            {
                "url": f"{US_CORE}/us-core-ethnicity",
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": _coding(
                            "urn:oid:2.16.840.1.113883.6.238", "2186-5", "Not Hispanic or Latino"
                        ),
                    },
                    {"url": "text", "valueString": "Not Hispanic or Latino"},
                ],
            },
            {"url": f"{US_CORE}/us-core-birthsex", "valueCode": "F" if gender == "female" else "M"},
        ],
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": _id(rng)},
            {
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "MR",
                            "Medical Record Number",
                        )
                    ]
                },
                "system": MRN,
                "value": f"R{index:08d}",
            },
            {
                "type": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/v2-0203",
                            "SS",
                            "Social Security Number",
                        )
                    ]
                },
                "system": SSN,
                "value": f"999-{index % 100:02d}-{index % 10000:04d}",
            },
        ],
        "name": [
            {
                "use": "official",
                "family": rng.choice(FAMILY),
                "given": [rng.choice(GIVEN[gender])],
                "prefix": ["Mx."],
            }
        ],
        "telecom": [{"system": "phone", "value": f"555-{rng.randint(1000, 9999)}", "use": "home"}],
        "gender": gender,
        "birthDate": born.date().isoformat(),
        "address": [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                        "extension": [
                            {"url": "latitude", "valueDecimal": round(42 + rng.random(), 6)},
                            {"url": "longitude", "valueDecimal": round(-71 - rng.random(), 6)},
                        ],
                    }
                ],
                "line": [f"{rng.randint(1, 999)} Elm Street"],
                "city": "Springfield",
                "state": "MA",
                "postalCode": "01101",
                "country": "US",
            }
        ],
        "maritalStatus": {
            "coding": [
                _coding("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M", "Married")
            ]
        },
        "communication": [
            {"language": {"coding": [_coding("urn:ietf:bcp:47", "en-US", "English")]}}
        ],
    }


def _practitioner_ref(rng: random.Random) -> Resource:
    return {"reference": f"Practitioner?identifier={NPI}|{_npi(rng.randrange(PRACTITIONERS))}"}


def _organization_ref(rng: random.Random) -> Resource:
    return {
        "reference": f"Organization?identifier={ORG_SYSTEM}|org-{rng.randrange(ORGANIZATIONS):04d}"
    }


def _encounter(record: _Record, patient: str, start: datetime) -> tuple[str, Resource, Resource]:
    rng = record.rng
    practitioner, organization = _practitioner_ref(rng), _organization_ref(rng)
    encounter = record.add(
        {
            "resourceType": "Encounter",
            "status": "finished",
            "class": _coding(
                "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", "ambulatory"
            ),
            "type": [
                {
                    "coding": [_coding(SNOMED, "185349003", "Encounter for check up")],
                    "text": "Encounter for check up",
                }
            ],
            "subject": {"reference": patient},
            "participant": [{"individual": practitioner}],
            "period": {"start": _when(start), "end": _when(start + timedelta(minutes=30))},
            "serviceProvider": organization,
        }
    )
    return encounter, practitioner, organization


def _vitals(record: _Record, patient: str, encounter: str, when: datetime) -> list[str]:
    rng = record.rng
    base = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "vital-signs",
                        "vital signs",
                    )
                ]
            }
        ],
        "subject": {"reference": patient},
        "encounter": {"reference": encounter},
        "effectiveDateTime": _when(when),
        "issued": _when(when),
    }
    made = []
    for code, display, value, unit in (
        ("8302-2", "Body Height", rng.uniform(150, 190), "cm"),
        ("29463-7", "Body Weight", rng.uniform(50, 110), "kg"),
        ("39156-5", "Body mass index", rng.uniform(18, 35), "kg/m2"),
        ("8867-4", "Heart rate", rng.uniform(55, 100), "/min"),
    ):
        made.append(
            record.add(
                base
                | {
                    "code": {"coding": [_coding(LOINC, code, display)], "text": display},
                    "valueQuantity": {
                        "value": round(value, 1),
                        "unit": unit,
                        "system": UCUM,
                        "code": unit,
                    },
                }
            )
        )
    made.append(
        record.add(
            base
            | {
                "code": {
                    "coding": [_coding(LOINC, "85354-9", "Blood pressure panel")],
                    "text": "Blood pressure panel",
                },
                "component": [
                    {
                        "code": {"coding": [_coding(LOINC, code, display)]},
                        "valueQuantity": {
                            "value": rng.randint(low, high),
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    }
                    for code, display, low, high in (
                        ("8480-6", "Systolic blood pressure", 105, 150),
                        ("8462-4", "Diastolic blood pressure", 60, 95),
                    )
                ],
            }
        )
    )
    return made


def _note(
    record: _Record, patient: str, encounter: str, practitioner: Resource, when: datetime
) -> None:
    text = (_NOTE * record.rng.randint(3, 8)).encode()
    data = base64.b64encode(text).decode()
    record.add(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "category": [{"coding": [_coding(LOINC, "34117-2", "History and physical note")]}],
            "code": {"coding": [_coding(LOINC, "34117-2", "History and physical note")]},
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "effectiveDateTime": _when(when),
            "issued": _when(when),
            "performer": [practitioner],
            "presentedForm": [{"contentType": "text/plain; charset=utf-8", "data": data}],
        }
    )
    record.add(
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [_coding(LOINC, "34117-2", "History and physical note")]},
            "category": [
                {
                    "coding": [
                        _coding(
                            "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                            "clinical-note",
                            "Clinical Note",
                        )
                    ]
                }
            ],
            "subject": {"reference": patient},
            "date": _when(when),
            "author": [practitioner],
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": data}}],
            "context": {"encounter": [{"reference": encounter}], "period": {"start": _when(when)}},
        }
    )


def _clinical(
    record: _Record, patient: str, encounter: str, practitioner: Resource, when: datetime
) -> list[tuple[str, Resource]]:
    rng = record.rng
    items: list[tuple[str, Resource]] = []
    if rng.random() < 0.5:
        condition = record.add(
            {
                "resourceType": "Condition",
                "clinicalStatus": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "active",
                            "Active",
                        )
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        _coding(
                            "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "confirmed",
                            "Confirmed",
                        )
                    ]
                },
                "category": [
                    {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/condition-category",
                                "encounter-diagnosis",
                                "Encounter Diagnosis",
                            )
                        ]
                    }
                ],
                "code": {
                    "coding": [_coding(SNOMED, "59621000", "Essential hypertension")],
                    "text": "Essential hypertension",
                },
                "subject": {"reference": patient},
                "encounter": {"reference": encounter},
                "onsetDateTime": _when(when),
                "recordedDate": _when(when),
            }
        )
        items.append(
            (condition, {"coding": [_coding(SNOMED, "59621000", "Essential hypertension")]})
        )
    procedure = record.add(
        {
            "resourceType": "Procedure",
            "status": "completed",
            "code": {
                "coding": [_coding(SNOMED, "430193006", "Medication reconciliation")],
                "text": "Medication reconciliation",
            },
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "performedPeriod": {"start": _when(when), "end": _when(when + timedelta(minutes=15))},
        }
    )
    items.append(
        (procedure, {"coding": [_coding(SNOMED, "430193006", "Medication reconciliation")]})
    )
    medication = record.add(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [_coding(RXNORM, "197361", "Amlodipine 5 MG Oral Tablet")]
            },
            "subject": {"reference": patient},
            "encounter": {"reference": encounter},
            "authoredOn": _when(when),
            "requester": practitioner,
            "dosageInstruction": [
                {
                    "sequence": 1,
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "asNeededBoolean": False,
                }
            ],
        }
    )
    items.append(
        (medication, {"coding": [_coding(RXNORM, "197361", "Amlodipine 5 MG Oral Tablet")]})
    )
    if rng.random() < 0.3:
        record.add(
            {
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": {"coding": [_coding(CVX, "140", "Influenza, seasonal, injectable")]},
                "patient": {"reference": patient},
                "encounter": {"reference": encounter},
                "occurrenceDateTime": _when(when),
                "primarySource": True,
            }
        )
    return items


def _claim(
    record: _Record,
    patient: str,
    encounter: str,
    practitioner: Resource,
    organization: Resource,
    when: datetime,
    items: list[tuple[str, Resource]],
) -> None:
    rng = record.rng
    period = {"start": _when(when), "end": _when(when + timedelta(hours=1))}
    claim_items: list[Resource] = [
        {
            "sequence": n,
            "productOrService": concept,
            "encounter": [{"reference": encounter}],
            "net": {"value": round(rng.uniform(50, 900), 2), "currency": "USD"},
        }
        for n, (_, concept) in enumerate(items, 1)
    ]
    claim = record.add(
        {
            "resourceType": "Claim",
            "status": "active",
            "type": {"coding": [_coding(CLAIM_TYPE, "professional", "Professional")]},
            "use": "claim",
            "patient": {"reference": patient},
            "billablePeriod": period,
            "created": _when(when),
            "provider": organization,
            "priority": {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/processpriority", "normal", "Normal"
                    )
                ]
            },
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Medicare"}}],
            "item": claim_items,
            "total": {
                "value": round(sum(i["net"]["value"] for i in claim_items), 2),
                "currency": "USD",
            },
        }
    )
    adjudicated = [
        item
        | {
            "adjudication": [
                {
                    "category": {
                        "coding": [
                            _coding(
                                "https://bluebutton.cms.gov/resources/codesystem/adjudication",
                                code,
                                display,
                            )
                        ]
                    },
                    "amount": {"value": round(item["net"]["value"] * share, 2), "currency": "USD"},
                }
                for code, display, share in (
                    (
                        "https://bluebutton.cms.gov/resources/variables/line_coinsrnc_amt",
                        "Line Beneficiary Coinsurance Amount",
                        0.2,
                    ),
                    (
                        "https://bluebutton.cms.gov/resources/variables/line_prvdr_pmt_amt",
                        "Line Provider Payment Amount",
                        0.8,
                    ),
                    (
                        "https://bluebutton.cms.gov/resources/variables/line_sbmtd_chrg_amt",
                        "Line Submitted Charge Amount",
                        1.0,
                    ),
                    (
                        "https://bluebutton.cms.gov/resources/variables/line_alowd_chrg_amt",
                        "Line Allowed Charge Amount",
                        1.0,
                    ),
                )
            ]
        }
        for item in claim_items
    ]
    record.add(
        {
            "resourceType": "ExplanationOfBenefit",
            "status": "active",
            "type": {"coding": [_coding(CLAIM_TYPE, "professional", "Professional")]},
            "use": "claim",
            "patient": {"reference": patient},
            "billablePeriod": period,
            "created": _when(when),
            "insurer": {"display": "Medicare"},
            "provider": practitioner,
            "claim": {"reference": claim},
            "outcome": "complete",
            "careTeam": [
                {
                    "sequence": 1,
                    "provider": practitioner,
                    "role": {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/claimcareteamrole",
                                "primary",
                                "Primary Care Practitioner",
                            )
                        ]
                    },
                }
            ],
            "insurance": [{"focal": True, "coverage": {"display": "Medicare"}}],
            "item": adjudicated,
            "total": [
                {
                    "category": {
                        "coding": [
                            _coding(
                                "http://terminology.hl7.org/CodeSystem/adjudication",
                                "submitted",
                                "Submitted Amount",
                            )
                        ]
                    },
                    "amount": {
                        "value": round(sum(i["net"]["value"] for i in claim_items), 2),
                        "currency": "USD",
                    },
                }
            ],
            "payment": {
                "amount": {
                    "value": round(0.8 * sum(i["net"]["value"] for i in claim_items), 2),
                    "currency": "USD",
                }
            },
        }
    )


def patient_bundle(rng: random.Random, index: int) -> Resource:
    """One patient's record: about 2,000 entries for every LONG_HISTORY_EVERY-th patient,
    else 10 to 30 encounters (roughly 150 to 450 entries)."""
    record = _Record(rng)
    patient = record.add(_patient(rng, index))
    encounters = (
        150 if index % LONG_HISTORY_EVERY == LONG_HISTORY_EVERY - 1 else rng.randint(10, 30)
    )
    start = EPOCH - timedelta(days=encounters * 60)
    for n in range(encounters):
        when = start + timedelta(days=60 * n, hours=rng.randint(8, 16))
        encounter, practitioner, organization = _encounter(record, patient, when)
        _vitals(record, patient, encounter, when)
        if n % 3 == 0:
            _note(record, patient, encounter, practitioner, when)
        items = _clinical(record, patient, encounter, practitioner, when)
        _claim(record, patient, encounter, practitioner, organization, when, items)
    return record.bundle()


def record_bundles(patients: int, seed: int) -> list[Resource]:
    """The provider directory, then `patients` patient records (deterministic by seed)."""
    rng = random.Random(seed)
    return [directory_bundle(), *(patient_bundle(rng, i) for i in range(patients))]


# -- the benchmark rows --------------------------------------------------------------------

TARGET = 1_500.0  # resources/s, over HTTP and through `fhir-server load`
COLUMNS = ("patient records", "throughput", "server CPU/resource", "errors", "target", "met?")


@dataclass
class Row:
    label: str
    throughput: float
    cpu_us: float | None
    errors: int

    @property
    def met(self) -> bool:
        return self.throughput >= TARGET and self.errors == 0

    def cells(self) -> tuple[str, ...]:
        cpu = "—" if self.cpu_us is None else f"{self.cpu_us:,.0f} µs"
        return (
            self.label,
            f"{self.throughput:,.0f} resources/s",
            cpu,
            str(self.errors),
            f"≥ {TARGET:,.0f} resources/s",
            "yes" if self.met else "NO",
        )


def render(rows: list[Row], patients: int, resources: int) -> str:
    from bench.report import table

    heading = f"Patient records: {patients} patients, {resources:,} resources (bench/records.py)"
    return heading + "\n" + table(COLUMNS, [row.cells() for row in rows])


def measure(scratch: Path, patients: int, seed: int) -> tuple[list[Row], int]:
    """Load the same records over HTTP (transaction Bundles, two in flight) and through
    `fhir-server load` into fresh databases; the rows and the resource count."""
    from bench import server
    from bench.ingest import PreparedBundle, ingest

    bundles = record_bundles(patients, seed)
    prepared = [PreparedBundle(orjson.dumps(b), len(b["entry"])) for b in bundles]
    resources = sum(p.resources for p in prepared)
    rows = []
    with server.fhir_server(scratch / "records.db", scratch / "records.log") as fhir:
        ingest(fhir.fhir_base, prepared[:1], 1)  # the provider directory first
        before = fhir.cpu()
        loaded = ingest(fhir.fhir_base, prepared[1:], 2)
        cpu = fhir.cpu() - before
    rows.append(
        Row(
            "over HTTP (transaction Bundles)",
            loaded.throughput,
            cpu / loaded.resources * 1e6 if loaded.resources else None,
            loaded.errors,
        )
    )
    rows.append(_through_load(scratch, prepared))
    return rows, resources


def _through_load(scratch: Path, prepared: list[Any]) -> Row:
    """`fhir-server load` of the Bundle files; wall time and CPU of the command."""
    import os
    import resource
    import subprocess
    import sys
    import time

    folder = scratch / "records"
    folder.mkdir(exist_ok=True)
    for n, bundle in enumerate(prepared):
        (folder / f"{n:05d}.json").write_bytes(bundle.body)
    env = {**os.environ, "FHIR_DATABASE": str(scratch / "records-load.db")}
    command = [str(Path(sys.executable).parent / "fhir-server"), "load"]
    subprocess.run([*command, str(folder / "00000.json")], env=env, check=True, capture_output=True)
    for path in [folder / "00000.json"]:
        path.unlink()  # the directory is loaded; time the patient records alone
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, str(folder)], env=env, capture_output=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    count = sum(p.resources for p in prepared[1:])
    return Row(
        "through fhir-server load",
        count / seconds if done.returncode == 0 else 0.0,
        cpu / count * 1e6,
        0 if done.returncode == 0 else 1,
    )
