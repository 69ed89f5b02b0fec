"""The Bundles `convert` builds commit through the FHIR service, and a replay changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from adapters.hl7v2.convert import ConvertOptions, convert
from adapters.hl7v2.message import MessageError
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage
from tests.support.loaded import call

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "hl7v2"
CASES = sorted(VECTORS.glob("*/*.hl7"))
MSH = "MSH|^~\\&|APP|FAC|RCV|RFAC|{ts}||{type}|C{n}|P|2.5.1"
PID = "PID|1||12001^^^HOSP^MR||Everyman^Adam||19610615|M"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = SQLiteStorage(tmp_path / "hl7.db")
    await storage.open()
    try:
        yield FhirService(storage, base_url="http://test/fhir")
    finally:
        await storage.close()


async def post(svc: FhirService, bundle: dict[str, Any]) -> list[str]:
    answer = await call(svc, "POST", "", bundle)
    return [e["response"]["status"] for e in answer["entry"]]


def message(
    *segments: str, type: str = "ADT^A01^ADT_A01", n: int = 1, ts: str = "20240105083000"
) -> str:
    return "\r".join([MSH.format(ts=ts, type=type, n=n), *segments]) + "\r"


@pytest.mark.parametrize("case", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
async def test_replay_changes_nothing(service: FhirService, case: Path) -> None:
    bundle = convert(case.read_bytes()).bundle
    first = await post(service, bundle)
    assert all(s.startswith(("200", "201")) for s in first)
    locations = []
    for entry in bundle["entry"]:
        request = entry["request"]
        if request["method"] == "PATCH":
            continue  # its target is the conditional create's (checked there)
        url = (
            f"{request['url']}?{request['ifNoneExist']}"
            if "ifNoneExist" in request
            else request["url"]
        )
        path, _, criteria = url.partition("?")
        found = await call(service, "GET", path, query=tuple(parse_qsl(criteria)))
        if found.get("resourceType") == "Bundle":
            assert len(found["entry"]) == 1, url
            found = found["entry"][0]["resource"]
        assert found["resourceType"] == entry["resource"]["resourceType"]
        locations.append((found["resourceType"], found["id"], found["meta"]["versionId"]))
    second = await post(service, bundle)
    assert all(s.startswith("200") for s in second), second
    for type, id, version in locations:
        again = await call(service, "GET", f"{type}/{id}")
        assert again["meta"]["versionId"] == version, f"{type}/{id} changed on replay"


async def test_vectors_share_one_patient(service: FhirService) -> None:
    """ADT^A01 then ORU^R01 for the same PID-3: one Patient, updated in place."""
    for name in ("adt_a01/basic.hl7", "oru_r01/basic.hl7", "adt_a08/update.hl7"):
        await post(service, convert((VECTORS / name).read_bytes()).bundle)
    found = await call(
        service,
        "GET",
        "Patient",
        query=(("identifier", "urn:oid:2.16.840.1.113883.19.5|PATID1234"),),
    )
    assert len(found["entry"]) == 1
    patient = found["entry"][0]["resource"]
    assert patient["maritalStatus"]["coding"][0]["code"] == "S"  # the A08's update
    reports = await call(
        service, "GET", "DiagnosticReport", query=(("subject", f"Patient/{patient['id']}"),)
    )
    assert len(reports["entry"]) == 1
    assert len(reports["entry"][0]["resource"]["result"]) == 6


async def test_merge_marks_the_merged_patient(service: FhirService) -> None:
    """ADT^A40: the merged patient keeps its data, becomes inactive and links to the
    survivor (replaced-by / replaces); a replay adds no second link and no version."""
    known = await call(
        service,
        "POST",
        "Patient",
        {
            "resourceType": "Patient",
            "name": [{"family": "Oldrecord"}],
            "birthDate": "1962-03-20",
            "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": "PATID9999"}],
        },
    )
    merge = convert((VECTORS / "adt_a40" / "merge.hl7").read_bytes()).bundle
    await post(service, merge)
    await post(service, merge)
    merged = (
        await call(
            service,
            "GET",
            "Patient",
            query=(("identifier", "urn:oid:2.16.840.1.113883.19.5|PATID9999"),),
        )
    )["entry"][0]["resource"]
    survivor = (
        await call(
            service,
            "GET",
            "Patient",
            query=(("identifier", "urn:oid:2.16.840.1.113883.19.5|PATID1234"),),
        )
    )["entry"][0]["resource"]
    assert merged["id"] == known["id"] and merged["meta"]["versionId"] == "2"
    assert merged["name"] == [{"family": "Oldrecord"}] and merged["birthDate"] == "1962-03-20"
    assert merged["active"] is False
    assert merged["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    assert survivor["link"] == [
        {"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"}
    ]


async def test_merge_of_an_unknown_patient_creates_it_inactive(service: FhirService) -> None:
    await post(service, convert((VECTORS / "adt_a40" / "merge.hl7").read_bytes()).bundle)
    found = await call(
        service,
        "GET",
        "Patient",
        query=(("identifier", "urn:oid:2.16.840.1.113883.19.5|PATID9999"),),
    )
    assert len(found["entry"]) == 1
    merged = found["entry"][0]["resource"]
    assert merged["active"] is False and merged["link"][0]["type"] == "replaced-by"


async def test_appointment_lifecycle_s12_to_s15(service: FhirService) -> None:
    """SIU S12 books, S13/S14 change the same Appointment (by SCH-1/2), S15 cancels it."""

    def siu(event: str, n: int, start: str, status: str = "") -> dict[str, Any]:
        sch = f"SCH|APT-7^SCHED|APT-77^SCHED|||||||30|min|^^30^{start}||||||||||||||{status}"
        return convert(message(sch, PID, type=f"SIU^{event}^SIU_S12", n=n)).bundle

    await post(service, siu("S12", 1, "20250210093000"))
    await post(service, siu("S13", 2, "20250211093000"))  # rescheduled
    await post(service, siu("S14", 3, "20250211100000"))  # modified
    found = await call(service, "GET", "Appointment")
    assert len(found["entry"]) == 1
    appointment = found["entry"][0]["resource"]
    assert appointment["status"] == "booked"
    assert appointment["start"].startswith("2025-02-11T10:00:00")
    await post(service, siu("S15", 4, "20250211100000"))
    found = await call(service, "GET", "Appointment")
    assert [e["resource"]["status"] for e in found["entry"]] == ["cancelled"]


async def test_same_patient_found_when_created_elsewhere(service: FhirService) -> None:
    """A Patient created by another client is updated, not duplicated."""
    made = await call(
        service,
        "POST",
        "Patient",
        {"resourceType": "Patient", "identifier": [{"system": "urn:id:HOSP", "value": "12001"}]},
    )
    await post(service, convert(message("EVN|A01", PID)).bundle)
    found = await call(service, "GET", "Patient", query=(("identifier", "urn:id:HOSP|12001"),))
    assert [e["resource"]["id"] for e in found["entry"]] == [made["id"]]
    assert found["entry"][0]["resource"]["gender"] == "male"


def test_timezone_option_applies_to_times_without_offset() -> None:
    raw = message(
        "EVN|A01",
        PID,
        "PV1|1|I|||||||||||||||||V9^^^HOSP^VN|||||||||||||||||||||||||20240705080000",
    )
    bundle = convert(raw, ConvertOptions(timezone="Europe/Paris")).bundle
    encounter = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"
    )
    assert encounter["period"]["start"] == "2024-07-05T08:00:00+02:00"
    assert encounter["status"] == "in-progress"
    assert encounter["class"]["code"] == "IMP"


def test_identifier_systems_option() -> None:
    bundle = convert(
        message("EVN|A01", PID),
        ConvertOptions(identifier_systems={"HOSP": "http://hosp.example/mrn"}),
    ).bundle
    assert bundle["entry"][0]["request"]["url"] == (
        "Patient?identifier=http://hosp.example/mrn|12001"
    )


def test_invalid_dates_are_dropped() -> None:
    raw = message("EVN|A01", "PID|1||12001^^^HOSP^MR||Everyman^Adam||19611345|M")
    patient = convert(raw).bundle["entry"][0]["resource"]
    assert "birthDate" not in patient


def test_repeated_observation_codes_do_not_collide() -> None:
    raw = message(
        "PID|1||12001^^^HOSP^MR",
        "OBR|1|P1|F1|24323-8^CMP^LN",
        "OBX|1|NM|2345-7^Glucose^LN||100|mg/dL|||||F",
        "OBX|2|NM|2345-7^Glucose^LN||110|mg/dL|||||F",
        type="ORU^R01^ORU_R01",
    )
    urls = [
        e["request"]["url"]
        for e in convert(raw).bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    ]
    assert len(urls) == len(set(urls)) == 2


@pytest.mark.parametrize(
    ("segments", "code", "location"),
    [
        (("EVN|A01", "PID|1||^^^HOSP^MR||Everyman^Adam"), "101", "PID^1^3"),
        (("EVN|A01",), "100", "PID"),
    ],
)
def test_content_errors_are_ae(segments: tuple[str, ...], code: str, location: str) -> None:
    with pytest.raises(MessageError) as caught:
        convert(message(*segments))
    assert (caught.value.ack_code, caught.value.error_code, caught.value.location) == (
        "AE",
        code,
        location,
    )


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ("A01", "in-progress"),
        ("A04", "in-progress"),
        ("A03", "finished"),
        ("A05", "planned"),
        ("A11", "cancelled"),
    ],
)
def test_encounter_status_follows_the_event(event: str, status: str) -> None:
    raw = message(
        f"EVN|{event}", PID, "PV1|1|I|||||||||||||||||V9^^^HOSP^VN", type=f"ADT^{event}^ADT_A01"
    )
    encounter = next(
        e["resource"]
        for e in convert(raw).bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter"
    )
    assert encounter["status"] == status


@pytest.mark.parametrize(
    ("obx", "key", "value"),
    [
        (
            "OBX|1|SN|1^T^LN||^10^-^20|mg",
            "valueRange",
            {
                "low": {
                    "value": 10,
                    "unit": "mg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg",
                },
                "high": {
                    "value": 20,
                    "unit": "mg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg",
                },
            },
        ),
        ("OBX|1|SN|1^T^LN||>=^5", "valueQuantity", {"value": 5, "comparator": ">="}),
        ("OBX|1|DT|1^T^LN||20240105", "valueDateTime", "2024-01-05"),
        ("OBX|1|TS|1^T^LN||202401050830+0100", "valueDateTime", "2024-01-05T08:30:00+01:00"),
        ("OBX|1|NM|1^T^LN||7.5|widgets", "valueQuantity", {"value": 7.5, "unit": "widgets"}),
        ("OBX|1|FT|1^T^LN||a\\.br\\b", "valueString", "a\nb"),
    ],
)
def test_observation_value_types(obx: str, key: str, value: object) -> None:
    raw = message(PID, "OBR|1|P1|F1|24323-8^CMP^LN", obx, type="ORU^R01^ORU_R01")
    obs = next(
        e["resource"]
        for e in convert(raw).bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    )
    assert obs[key] == value


def test_encapsulated_data_is_an_attachment_extension() -> None:
    raw = message(
        PID,
        "OBR|1|P1|F1|24323-8^CMP^LN",
        "OBX|1|ED|1^Report^LN||^AP^PDF^Base64^JVBERi0=",
        type="ORU^R01^ORU_R01",
    )
    obs = next(
        e["resource"]
        for e in convert(raw).bundle["entry"]
        if e["resource"]["resourceType"] == "Observation"
    )
    assert obs["extension"] == [
        {
            "url": "https://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment",
            "valueAttachment": {"contentType": "application/pdf", "data": "JVBERi0="},
        }
    ]
