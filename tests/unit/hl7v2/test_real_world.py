"""Regression tests for what live feeds from several vendors showed (issue 19), each
built from a message of our own."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.ack import read_ack
from adapters.hl7v2.convert import ConvertOptions, convert
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.ingest import IngestOptions, Ingestor
from adapters.hl7v2.message import MessageError
from adapters.hl7v2.mllp import ListenerLimits, MllpListener
from fhir_server.interactions.service import FhirService
from tests.support.engines import ENGINE_FACTORIES
from tests.support.loaded import call


def message(
    *segments: str,
    app: str = "APP",
    facility: str = "FAC",
    type: str = "ADT^A01^ADT_A01",
    control: str = "C1",
    processing: str = "P",
    version: str = "2.5.1",
) -> str:
    msh = (
        f"MSH|^~\\&|{app}|{facility}|RCV|RFAC|20240105083000||{type}|{control}|"
        f"{processing}|{version}"
    )
    return "\r".join([msh, *segments]) + "\r"


def resources(raw: str, kind: str, options: ConvertOptions | None = None) -> list[dict[str, Any]]:
    bundle = convert(raw, options).bundle
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def criteria(raw: str) -> list[str]:
    return [
        e["request"].get("ifNoneExist") or e["request"]["url"] for e in convert(raw).bundle["entry"]
    ]


@pytest.fixture(params=sorted(ENGINE_FACTORIES))
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = await ENGINE_FACTORIES[request.param](tmp_path)
    try:
        yield FhirService(storage, base_url="http://test/fhir")
    finally:
        await storage.close()


@pytest.fixture
async def ingestor(service: FhirService, tmp_path: Path) -> AsyncIterator[Ingestor]:
    inbox = await Inbox(tmp_path / "inbox.db").open()
    try:
        yield Ingestor(service, inbox)
    finally:
        await inbox.close()


async def exchange(ingestor: Ingestor, raw: str) -> list[tuple[str, str, str]]:
    """The ACKs `raw` gets, as (MSA-1, ERR-3 code, ERR-2 location)."""
    acks: list[bytes] = []

    async def reply(ack: bytes) -> None:
        acks.append(ack)

    await ingestor.receive(raw.encode(), reply)
    return [_ack_fields(a.decode()) for a in acks]


def _ack_fields(ack: str) -> tuple[str, str, str]:
    segments = {s[:3]: s.split("|") for s in ack.split("\r") if s}
    err = segments.get("ERR", [])
    return (
        read_ack(ack).code,
        err[3].split("^")[0] if len(err) > 3 else "",
        err[2] if len(err) > 2 else "",
    )


# --- 1. identity across senders -------------------------------------------------------------


async def test_identifier_without_authority_never_matches_another_senders_patient(
    service: FhirService,
) -> None:
    """Two senders with an empty MSH-4 both send PID-3 `777` without an assigning authority:
    two patients, each under its sender's system; the first keeps its name and birth date."""
    first = message("EVN|A01", "PID|1||777||Smith^Anne||19700101|F", app="NORTHLAB", facility="")
    second = message("EVN|A01", "PID|1||777||Jones^Bob||19900202|M", app="SOUTHLAB", facility="")
    await call(service, "POST", "", convert(first).bundle)
    await call(service, "POST", "", convert(second).bundle)
    found = await call(service, "GET", "Patient", query=(("identifier", "777"),))
    patients = sorted((e["resource"] for e in found["entry"]), key=lambda p: p["birthDate"])
    assert [p["name"][0]["family"] for p in patients] == ["Smith", "Jones"]
    assert [p["identifier"][0]["system"] for p in patients] == [
        "urn:id:NORTHLAB",
        "urn:id:SOUTHLAB",
    ]


def test_identifier_system_from_configured_sender() -> None:
    raw = message("EVN|A01", "PID|1||777||Smith^Anne", app="NORTHLAB", facility="")
    options = ConvertOptions(identifier_systems={"NORTHLAB": "http://north.example/mrn"})
    assert resources(raw, "Patient", options)[0]["identifier"][0] == {
        "system": "http://north.example/mrn",
        "value": "777",
    }


def test_no_sender_and_no_authority_is_refused_with_ae() -> None:
    raw = message("EVN|A01", "PID|1||777||Smith^Anne", app="", facility="")
    with pytest.raises(MessageError) as caught:
        convert(raw)
    assert (caught.value.ack_code, caught.value.error_code, caught.value.location) == (
        "AE",
        "101",
        "PID^1^3",
    )


def test_every_conditional_criterion_carries_a_system() -> None:
    """Patients, encounters, practitioners, orders, specimens, organizations: no criterion
    searches a bare value, even when neither the sender nor the message names an authority
    for the practitioners and organizations (those become display-only references)."""
    raw = message(
        "PID|1||777||Smith^Anne",
        "PD1|||General Clinic^^55",
        "PV1|1|I|W1^1^1||||D9^Doc^Al|||||||||||V1",
        "ORC|RE|P1|F1||||||||||O7^Orderer^Olga",
        "OBR|1|P1|F1|24323-8^CMP^LN|||20240105",
        "OBX|1|NM|2345-7^Glucose^LN||100|mg/dL|||||F|||||R5^Reader^Rita",
        "SPM|1|S1||BLD",
        app="LAB",
        facility="",
        type="ORU^R01^ORU_R01",
    )
    for url in criteria(raw):
        if "identifier=" in url:
            token = url.split("identifier=", 1)[1]
            assert "|" in token, url


# --- 7. older feeds ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", [2, 4])
def test_patient_identifier_from_pid2_or_pid4_when_pid3_is_empty(field: int) -> None:
    fields = ["PID", "1", "", "", "", "Older^Feed", "", "19500101"]
    fields[field] = "V23-55^^^OLDHOSP"
    raw = message("EVN|A01", "|".join(fields), version="2.3")
    patient = resources(raw, "Patient")[0]
    assert patient["identifier"][0]["value"] == "V23-55"
    assert patient["identifier"][0]["system"] == "urn:id:OLDHOSP"


# --- 2. escapes and subcomponents -----------------------------------------------------------


def test_escaped_delimiters_stay_text_and_subcomponents_stay_apart() -> None:
    raw = message(
        "EVN|A01",
        "PID|1||E1^^^HOSP||SMITH\\T\\JONES^ANN\\F\\MARIE||19800101|F|||"
        "1 Main St^^Springfield^IL^62701^USA^H^^C17&Sangamon&HL70289",
        "PV1|1|I|ICU&1.2.3&ISO^12^B",
    )
    patient = resources(raw, "Patient")[0]
    assert patient["name"][0] == {"family": "SMITH&JONES", "given": ["ANN|MARIE"]}
    assert patient["address"][0]["district"] == "C17"
    assert [loc["name"] for loc in resources(raw, "Location")] == ["ICU", "12", "B"]


def test_formatting_and_hex_escapes_in_text_values() -> None:
    raw = message(
        "PID|1||E1^^^HOSP",
        "OBR|1|P1|F1|11526-1^Path^LN",
        "OBX|1|FT|22637-3^Report^LN||"
        "Caf\\XC3A9\\ note\\.br\\second \\H\\line\\N\\ \\E\\ \\S\\||||||F",
        type="ORU^R01^ORU_R01",
    )
    observation = resources(raw, "Observation")[0]
    assert observation["valueString"] == "Café note\nsecond line \\ ^"


def test_xtn_observation_value_is_a_formatted_number() -> None:
    raw = message(
        "PID|1||E1^^^HOSP",
        "OBR|1|P1|F1|11526-1^Path^LN",
        "OBX|1|XTN|PHONE^Callback^L||^PRN^PH^^1^901^4445566||||||F",
        type="ORU^R01^ORU_R01",
    )
    assert resources(raw, "Observation")[0]["valueString"] == "+1 (901) 4445566"


# --- 4. enhanced-mode acknowledgement -------------------------------------------------------


@pytest.mark.parametrize(
    ("msh9", "version", "code"),
    [("ADT^A99^ADT_A01", "2.5.1", "201"), ("ZZZ^Z01", "2.5.1", "200"), ("ADT^A01", "9.9", "203")],
)
async def test_enhanced_mode_refusal_known_at_receipt_is_a_commit_reject(
    ingestor: Ingestor, msh9: str, version: str, code: str
) -> None:
    """MSH-15 AL, MSH-16 NE: a message the adapter will refuse gets CR (not CA, then
    silence), with the reason in ERR."""
    raw = message("EVN|A01", "PID|1||E1^^^HOSP", type=msh9, version=version)
    raw = raw.replace(f"|{version}\r", f"|{version}|||AL|NE\r", 1)
    assert await exchange(ingestor, raw) == [
        ("CR", code, "MSH^1^9" if code != "203" else "MSH^1^12")
    ]


async def test_original_mode_refusal_is_not_stored(ingestor: Ingestor) -> None:
    raw = message("EVN|A01", "PID|1||E1^^^HOSP", type="ADT^A99^ADT_A01")
    assert await exchange(ingestor, raw) == [("AR", "201", "MSH^1^9")]
    assert await ingestor.inbox.call(ingestor.inbox.file.unfinished) == []


# --- 6. header leniency -----------------------------------------------------------------------


@pytest.mark.parametrize("processing", ["", "N", "P"])
async def test_processing_id_is_read_leniently_by_default(
    ingestor: Ingestor, processing: str
) -> None:
    raw = message("EVN|A01", "PID|1||E1^^^HOSP", processing=processing)
    assert await exchange(ingestor, raw) == [("AA", "", "")]


async def test_strict_processing_id_setting(service: FhirService, tmp_path: Path) -> None:
    inbox = await Inbox(tmp_path / "strict.db").open()
    try:
        options = IngestOptions(convert=ConvertOptions(strict_processing_id=True))
        strict = Ingestor(service, inbox, options)
        raw = message("EVN|A01", "PID|1||E1^^^HOSP", processing="N")
        assert await exchange(strict, raw) == [("AR", "202", "MSH^1^11")]
    finally:
        await inbox.close()


async def test_missing_control_id_is_refused(ingestor: Ingestor) -> None:
    raw = message("EVN|A01", "PID|1||E1^^^HOSP", control="")
    assert await exchange(ingestor, raw) == [("AR", "101", "MSH^1^10")]
    with pytest.raises(MessageError):
        convert(raw)


# --- 3. all-or-nothing on optional content ----------------------------------------------------


async def test_incomplete_insurance_leaves_out_in1_only(
    ingestor: Ingestor, service: FhirService
) -> None:
    """An IN1 without insurer: the registration is committed, the ACK is AA with an ERR of
    severity W naming the segment left out."""
    raw = message(
        "EVN|A01",
        "PID|1||R1^^^HOSP||Kept^Registration",
        "PV1|1|I|W1^1^1||||||||||||||||V77^^^HOSP",
        "IN1|1|PLAN7",
    )
    acks: list[bytes] = []

    async def reply(ack: bytes) -> None:
        acks.append(ack)

    await ingestor.receive(raw.encode(), reply)
    [ack] = [a.decode() for a in acks]
    err = next(s for s in ack.split("\r") if s.startswith("ERR")).split("|")
    assert read_ack(ack).code == "AA"
    assert (err[2], err[3].split("^")[0], err[4]) == ("IN1^1^3", "101", "W")
    for kind in ("Patient", "Encounter"):
        found = await call(service, "GET", kind)
        assert len(found["entry"]) == 1, kind
    assert (await call(service, "GET", "Coverage")).get("entry", []) == []


def test_observation_without_code_is_left_out_of_the_report() -> None:
    raw = message(
        "PID|1||R1^^^HOSP",
        "OBR|1|P1|F1|24323-8^CMP^LN",
        "OBX|1|NM|2345-7^Glucose^LN||100|mg/dL|||||F",
        "OBX|2|NM|||7|mg/dL|||||F",
        "NTE|1||note on the observation left out",
        type="ORU^R01^ORU_R01",
    )
    conversion = convert(raw)
    observations = resources(raw, "Observation")
    assert [o["code"]["coding"][0]["code"] for o in observations] == ["2345-7"]
    assert "note" not in observations[0]
    assert [(e.location, e.error_code) for e in conversion.left_out] == [("OBX^2^3", "101")]
    [report] = resources(raw, "DiagnosticReport")
    assert len(report["result"]) == 1


def test_orders_known_only_by_placer_group_number() -> None:
    raw = message(
        "PID|1||R1^^^HOSP",
        "ORC|NW|||G55^HIS",
        "OBR|1|||24323-8^CMP^LN",
        "ORC|NW|||G55^HIS",
        "OBR|2|||57021-8^CBC^LN",
        type="ORM^O01^ORM_O01",
    )
    requests = resources(raw, "ServiceRequest")
    assert len(requests) == 2
    assert {r["requisition"]["value"] for r in requests} == {"G55"}
    assert {r["requisition"]["system"] for r in requests} == {"urn:id:HIS"}


async def test_convert_operation_warns_about_segments_left_out(service: FhirService) -> None:
    from adapters.hl7v2.operations import install

    install(service)
    raw = message("EVN|A01", "PID|1||R1^^^HOSP", "AL1|1|DA")
    body = {"resourceType": "Parameters", "parameter": [{"name": "message", "valueString": raw}]}
    answer = await call(service, "POST", "$convert-hl7v2", body)
    parts = {p["name"]: p["resource"] for p in answer["parameter"]}
    assert parts["return"]["type"] == "transaction"
    [issue] = parts["outcome"]["issue"]
    assert issue["severity"] == "warning" and "AL1^1^3" in issue["diagnostics"]


# --- 5. framing (real TCP) --------------------------------------------------------------------


@pytest.fixture
async def listener(ingestor: Ingestor) -> AsyncIterator[MllpListener]:
    limits = ListenerLimits(max_message_bytes=1 << 20, idle_timeout=30.0, garbage_timeout=0.5)
    started = await MllpListener(ingestor, "127.0.0.1", 0, limits).start()
    try:
        yield started
    finally:
        await started.stop()


async def test_message_after_stray_bytes_is_read(
    listener: MllpListener, caplog: pytest.LogCaptureFixture
) -> None:
    raw = message("EVN|A01", "PID|1||F1^^^HOSP||Framed^After^Junk", control="FRAME-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(b"stray-bytes-123" + b"\x0b" + raw.encode() + b"\x1c\r")
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 20)
    finally:
        writer.close()
    assert read_ack(ack[1:-2]).code == "AA"
    assert read_ack(ack[1:-2]).control_id == "FRAME-1"
    assert "15 stray bytes" in caplog.text and "stray-bytes-123" not in caplog.text


async def test_garbage_only_connection_is_closed_soon(listener: MllpListener) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, long before 30 s
    finally:
        writer.close()


# --- 8. smaller mapping errors ----------------------------------------------------------------

SCH = "SCH|A-1^SCHED|A-11^SCHED|||||{reason}|{kind}|{amount}|{units}|^^^20250210093000"


@pytest.mark.parametrize(
    ("amount", "units", "minutes"),
    [("60", "S^seconds^ISO+", 1), ("90", "s", None), ("2", "H", 120), ("30", "", 30)],
)
def test_appointment_duration_follows_sch10_units(
    amount: str, units: str, minutes: int | None
) -> None:
    sch = SCH.format(reason="", kind="", amount=amount, units=units)
    raw = message(sch, "PID|1||S1^^^HOSP", type="SIU^S12^SIU_S12")
    assert resources(raw, "Appointment")[0].get("minutesDuration") == minutes


def test_appointment_reason_and_type_carry_their_code_systems() -> None:
    sch = SCH.format(reason="ROUTINE^Routine", kind="NORMAL^Normal", amount="", units="")
    raw = message(sch, "PID|1||S1^^^HOSP", type="SIU^S12^SIU_S12")
    appointment = resources(raw, "Appointment")[0]
    assert appointment["reasonCode"][0]["coding"][0]["system"].endswith("/v2-0276")
    assert appointment["appointmentType"]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0277",
        "code": "NORMAL",
        "display": "Normal",
    }
    typed = SCH.format(reason="WALKIN^Walk in^HL70277", kind="", amount="", units="")
    raw = message(typed, "PID|1||S1^^^HOSP", type="SIU^S12^SIU_S12")
    appointment = resources(raw, "Appointment")[0]
    assert appointment["appointmentType"]["coding"][0]["code"] == "WALKIN"
    assert "reasonCode" not in appointment


VXU = (
    "PID|1||V1^^^HOSP",
    "ORC|RE||IZ-{n}^SYS",
    "RXA|0|1|20240105||08^HepB^CVX|0.5|mL^mL^UCUM||{notes}",
    "RXR|IM^Intramuscular^HL70162|RD^Right Deltoid^NCIT",
)


@pytest.mark.parametrize(
    ("notes", "primary"),
    [("00^New immunization record^NIP001", True), ("01^Historical^NIP001", False)],
)
def test_immunization_primary_source_and_route_systems(notes: str, primary: bool) -> None:
    segments = [s.format(n=1, notes=notes) for s in VXU]
    [immunization] = resources(message(*segments, type="VXU^V04^VXU_V04"), "Immunization")
    assert immunization["primarySource"] is primary
    if not primary:
        assert immunization["reportOrigin"]["coding"][0] == {
            "system": "urn:oid:2.16.840.1.114222.4.5.274",
            "code": "01",
            "display": "Historical",
        }
    assert immunization["site"]["coding"][0]["system"] == (
        "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
    )


def test_dicom_study_uid_is_related_not_text() -> None:
    raw = message(
        "EVN|T02",
        "PID|1||D1^^^HOSP",
        "TXA|1|DI|TX|||20240105||||||DOC-9^RIS",
        "OBX|1|TX|18748-4^Report^LN||Normal chest.||||||F",
        "OBX|2|UI|113014^DICOM Study^DCM||1.2.840.113619.2.55.3||||||F",
        type="MDM^T02^MDM_T02",
    )
    document = resources(raw, "DocumentReference")[0]
    assert document["context"]["related"] == [
        {"identifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.113619.2.55.3"}}
    ]
    [binary] = [b for b in resources(raw, "Binary") if b["contentType"] == "text/plain"]
    assert base64.b64decode(binary["data"]).decode() == "Normal chest."


async def test_validation_failure_names_the_segment_and_field(ingestor: Ingestor) -> None:
    """An OBX-3 code the FHIR validation refuses (two inner spaces): AE whose ERR names
    OBX^2^3 with code 102, not an internal error 207 without a location."""
    raw = message(
        "PID|1||V1^^^HOSP",
        "OBR|1|P1|F1|24323-8^CMP^LN",
        "OBX|1|NM|2345-7^Glucose^LN||100|mg/dL|||||F",
        "OBX|2|NM|23  45^Odd code^L||7|mg/dL|||||F",
        type="ORU^R01^ORU_R01",
    )
    assert await exchange(ingestor, raw) == [("AE", "102", "OBX^2^3")]


# --- coverage: patient and encounter details ------------------------------------------------


def test_patient_details() -> None:
    pid = (
        "PID|1||P9^^^HOSP^MR||Doe^Jane||19800101|F||2106-3^White^CDCREC|||||"
        "en^English^ISO639|M|CAT^Catholic^HL70006||123-45-6789|||"
        "2186-5^Not Hispanic^CDCREC||Y|2"
    )
    patient = resources(message("EVN|A01", pid), "Patient")[0]
    urls = [e["url"] for e in patient["extension"]]
    assert urls == [
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        "http://hl7.org/fhir/StructureDefinition/patient-religion",
    ]
    race = patient["extension"][0]["extension"]
    assert race[0]["valueCoding"]["code"] == "2106-3" and race[1]["valueString"] == "White"
    assert patient["communication"][0]["language"]["coding"][0]["code"] == "en"
    assert {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}.items() <= (
        patient["identifier"][1].items()
    )
    assert patient["multipleBirthInteger"] == 2


def test_encounter_details() -> None:
    pv1 = (
        "PV1|1|I|W1^1^1|E^Emergency|||A1^Attend^Al|R1^Refer^Rita|C1^Consult^Cy|MED|||R|7||"
        "|||V1^^^HOSP|||||||||||||||||01^Home"
    )
    encounter = resources(message("EVN|A01", "PID|1||P9^^^HOSP", pv1), "Encounter")[0]
    roles = [p["type"][0]["coding"][0]["code"] for p in encounter["participant"]]
    assert roles == ["ATND", "REF", "CON"]
    assert encounter["type"][0]["coding"][0]["code"] == "E"
    stay = encounter["hospitalization"]
    assert stay["admitSource"]["coding"][0]["code"] == "7"
    assert stay["reAdmission"]["coding"][0]["code"] == "R"
    assert stay["dischargeDisposition"]["coding"][0]["code"] == "01"


async def test_locations_form_a_hierarchy_deduplicated_by_identifier(
    service: FhirService,
) -> None:
    """PV1-3 W1^101^A in two messages, and W1^102^B: one ward, two rooms, two beds, each
    partOf the level above; the Encounter points at the bed."""
    for n, (room, bed) in enumerate((("101", "A"), ("101", "A"), ("102", "B"))):
        raw = message(
            "EVN|A01",
            f"PID|1||L{n}^^^HOSP",
            f"PV1|1|I|W1^{room}^{bed}||||||||||||||||V{n}^^^HOSP",
            control=f"L{n}",
        )
        await call(service, "POST", "", convert(raw).bundle)
    found = await call(service, "GET", "Location", query=(("_count", "50"),))
    by_id = {e["resource"]["id"]: e["resource"] for e in found["entry"]}
    names = sorted(loc["name"] for loc in by_id.values())
    assert names == ["101", "102", "A", "B", "W1"]
    beds = [loc for loc in by_id.values() if loc["physicalType"]["coding"][0]["code"] == "bd"]
    for bed in beds:
        room = by_id[bed["partOf"]["reference"].split("/")[1]]
        ward = by_id[room["partOf"]["reference"].split("/")[1]]
        assert ward["name"] == "W1" and "partOf" not in ward
    encounter = (await call(service, "GET", "Encounter"))["entry"][0]["resource"]
    assert encounter["location"][0]["location"]["reference"].split("/")[1] in {
        b["id"] for b in beds
    }


def test_episode_of_care_and_insured_person() -> None:
    pv1 = "PV1|1|I|W1||||||||||||||||V1^^^HOSP" + "|" * 34 + "Knee rehab|EP-7^^^HOSP"
    in1 = "IN1|1|PLAN1|INS1^^^HOSP|Insurer Inc" + "|" * 12 + "Doe^John|SPO^Spouse|19790101"
    raw = message("EVN|A01", "PID|1||P9^^^HOSP", pv1, in1)
    [episode] = resources(raw, "EpisodeOfCare")
    assert episode["identifier"][0]["value"] == "EP-7"
    assert episode["extension"][0]["valueString"] == "Knee rehab"
    encounter = resources(raw, "Encounter")[0]
    assert encounter["episodeOfCare"][0]["reference"].startswith("urn:uuid:")
    [insured] = resources(raw, "RelatedPerson")
    assert insured["name"][0]["family"] == "Doe" and insured["birthDate"] == "1979-01-01"
    coverage = resources(raw, "Coverage")[0]
    assert coverage["relationship"]["coding"][0]["code"] == "spouse"
    assert "subscriber" in coverage


def test_order_observations_and_appointment_locations() -> None:
    raw = message(
        "PID|1||P9^^^HOSP",
        "ORC|NW|P1^HIS",
        "OBR|1|P1^HIS||24323-8^CMP^LN",
        "OBX|1|NM|8302-2^Height^LN||180|cm|||||F",
        type="OML^O21^OML_O21",
    )
    [request] = resources(raw, "ServiceRequest")
    [observation] = resources(raw, "Observation")
    assert observation["code"]["coding"][0]["code"] == "8302-2"
    assert len(request["supportingInfo"]) == 1
    sch = "SCH|A1^S|A1^S|||||||30|MIN|^^^20250101090000"
    siu = message(sch, "PID|1||P9^^^HOSP", "AIL|1||CLINIC^Room 3", type="SIU^S12^SIU_S12")
    names = [loc["name"] for loc in resources(siu, "Location")]
    assert names == ["CLINIC", "Room 3"]
    appointment = resources(siu, "Appointment")[0]
    assert appointment["participant"][-1]["actor"]["display"] == "CLINIC Room 3"


async def test_document_notification_without_text_commits(service: FhirService) -> None:
    """MDM^T01 announces a document without its text: a DocumentReference whose attachment
    has no data (an empty Binary would be invalid and lose the message)."""
    raw = message(
        "EVN|T01",
        "PID|1||D1^^^HOSP",
        "TXA|1|CN|TX|||20240105||||||DOC-1^RIS||||||AU",
        type="MDM^T01^MDM_T01",
    )
    await call(service, "POST", "", convert(raw).bundle)
    [document] = (await call(service, "GET", "DocumentReference"))["entry"]
    assert document["resource"]["content"] == [{"attachment": {"contentType": "text/plain"}}]


def test_mothers_identifier_is_a_related_person() -> None:
    pid = "PID|1||B1^^^HOSP||Baby^Boy||20240101|M" + "|" * 13 + "M77^^^HOSP"
    [mother] = resources(message("EVN|A01", pid), "RelatedPerson")
    assert mother["identifier"][0] == {"system": "urn:id:HOSP", "value": "M77"}
    assert mother["relationship"][0]["coding"][0]["code"] == "MTH"


def test_order_timing_and_priority_from_tq1() -> None:
    raw = message(
        "PID|1||P9^^^HOSP",
        "ORC|NW|P1^HIS",
        "TQ1|1||||||20240105080000|20240105120000|S||Fasting",
        "OBR|1|P1^HIS||24323-8^CMP^LN",
        "ORC|NW|P2^HIS",
        "OBR|1|P2^HIS||57021-8^CBC^LN",
        type="ORM^O01^ORM_O01",
    )
    first, second = resources(raw, "ServiceRequest")
    assert first["priority"] == "stat" and first["note"] == [{"text": "Fasting"}]
    period = first["occurrenceTiming"]["repeat"]["boundsPeriod"]
    assert period["start"].startswith("2024-01-05T08:00:00")
    assert "priority" not in second and "occurrenceTiming" not in second


def test_empty_interpretation_repetition_is_skipped() -> None:
    raw = message(
        "PID|1||P9^^^HOSP",
        "OBR|1|P1|F1|24323-8^CMP^LN",
        'OBX|1|NM|2345-7^Glucose^LN||100|mg/dL||""~H|||F',
        type="ORU^R01^ORU_R01",
    )
    [observation] = resources(raw, "Observation")
    assert [i["coding"][0]["code"] for i in observation["interpretation"]] == ["H"]
