"""The IG maps that brought FHIR-Converter's sample corpus to 90% types present, each shown
on a message of our own: ordering providers and observers as PractitionerRoles, MDM orders,
VXU orders and observations, FT1 and IAM in every family, A28/A31 visits, observations of
pharmacy and scheduling messages, the EVN-5 operator; and every one of these messages commits
on both engines and changes nothing when replayed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.convert import convert
from fhir_server.interactions.service import FhirService
from tests.support.engines import ENGINE_FACTORIES
from tests.support.loaded import call

PID = "PID|1||M100^^^HOSP^MR||Doe^Jane||19800101|F"
PV1 = "PV1|1|I|W1^101^A^HOSP||||D1^Attend^Al^^^^^^HOSP||||||||||||V100^^^HOSP"


def message(type: str, *segments: str, evn: str = "") -> str:
    msh = f"MSH|^~\\&|APP|HOSP|RCV|RFAC|20240105083000||{type}|C1|P|2.5.1"
    head = [msh, evn] if evn else [msh]
    return "\r".join([*head, PID, *segments]) + "\r"


ORM = message(
    "ORM^O01^ORM_O01",
    "ORC|NW|ORD1^HOSP||||||||||D7^Order^Olga^^^^^^HOSP|||||||||Main Lab^^^^^HOSP^^^^LAB1",
    "OBR|1|ORD1^HOSP||24323-8^CMP^LN|||||||||||D8^Other^Oscar^^^^^^HOSP",
)
ORU = message(
    "ORU^R01^ORU_R01",
    "OBR|1|P1^HOSP|F1^LAB|24323-8^CMP^LN",
    "OBX|1|NM|2345-7^Glucose^LN||90|mg/dL|||||F|||20240105||OB1^Observer^Otto^^^^^^HOSP"
    "|||||||Lab Inc^^^^^HOSP^^^^LABORG|1 Lab St^^Town^ST^12345|MD1^Director^Dana^^^^^^HOSP",
)
MDM = message(
    "MDM^T02^MDM_T02",
    PV1,
    "ORC|SC|ORD9^HOSP",
    "OBR|1|ORD9^HOSP||18748-4^Imaging report^LN",
    "TXA|1|CN|TX|||20240101||||||DOC9^HOSP",
    "OBX|1|TX|11506-3^Note^LN||Text||||||F",
)
VXU = message(
    "VXU^V04^VXU_V04",
    "ORC|RE||IZ9^HOSP|||||||||NP1^Nurse^Nina^^^^^^HOSP",
    "RXA|0|1|20240101||08^HepB^CVX|0.5|mL^mL^UCUM",
    "OBX|1|CE|64994-7^Funding eligibility^LN||V02^VFC eligible^HL70064||||||F",
)
RDE = message(
    "RDE^O11^RDE_O11",
    "ORC|NW|RX9^HOSP",
    "RXE|^^^20240101|197361^Amlodipine^RXNORM|5",
    "OBX|1|NM|29463-7^Body weight^LN||70|kg|||||F",
)
SIU = message(
    "SIU^S12^SIU_S12",
    "OBX|1|NM|8302-2^Height^LN||180|cm|||||F",
    "SCH|A9^HOSP|A9^HOSP|||||||30|MIN|^^^20250101090000",
)
ORM_CHARGE = message(
    "ORM^O01^ORM_O01",
    "ORC|NW|ORD2^HOSP",
    "OBR|1|ORD2^HOSP||24323-8^CMP^LN",
    "FT1|1|T9||20240101||CG|99213^Visit^C4|||1",
)
A60 = message(
    "ADT^A60^ADT_A60",
    "IAM|1|DA|PCN^Penicillin^RXNORM|SV|Hives||||||20230101||20240102",
    evn="EVN|A60|20240105083000|||OP7^Operator^Oz^^^^^^HOSP",
)
A28 = message("ADT^A28^ADT_A05", PV1)
ORC_ONLY_OBX = message(
    "ORM^O01^ORM_O01",
    "ORC|NW|ORD3^HOSP",
    "OBX|1|NM|29463-7^Body weight^LN||70|kg|||||F",
)
GUARANTOR = message(
    "ADT^A04^ADT_A01",
    PV1,
    "GT1|1|G55^^^HOSP|Doe^John||1 Main St^^Town^ST^12345|555-1234^PRN^PH|||||SPO^Spouse||20240101",
)
SELF_GUARANTOR = message(
    "BAR^P01^BAR_P01",
    "GT1|1||Doe^Jane||||||||SEL",
).replace(PID, PID + "||||||||||ACC7^^^HOSP^AN")
MESSAGES = [ORM, ORU, MDM, VXU, RDE, SIU, ORM_CHARGE, A60, A28, ORC_ONLY_OBX, GUARANTOR]


def entries(raw: str) -> dict[str, dict[str, Any]]:
    """fullUrl -> resource of the converted Bundle."""
    return {e["fullUrl"]: e["resource"] for e in convert(raw).bundle["entry"]}


def of(found: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in found.values() if r["resourceType"] == kind]


def test_ordering_provider_is_a_practitioner_role_for_the_ordering_facility() -> None:
    """ORC[ServiceRequest]: ORC-12 -> requester PractitionerRole.practitioner, ORC-21 its
    organization (OBR-16 names another doctor: ORC-12 wins, as the IG maps it)."""
    found = entries(ORM)
    (request,) = of(found, "ServiceRequest")
    role = found[request["requester"]["reference"]]
    assert role["resourceType"] == "PractitionerRole"
    doctor = found[role["practitioner"]["reference"]]
    assert doctor["identifier"][0]["value"] == "D7"
    assert found[role["organization"]["reference"]]["name"] == "Main Lab"


def test_observer_and_medical_director_are_practitioner_roles() -> None:
    """OBX-16 -> performer PractitionerRole responsibleObserver; OBX-25 -> PractitionerRole
    MDIR of the OBX-23 organization (with its OBX-24 address)."""
    found = entries(ORU)
    (obs,) = of(found, "Observation")
    observer, director = (found[p["reference"]] for p in obs["performer"])
    assert observer["code"][0]["coding"][0]["code"] == "responsibleObserver"
    assert found[observer["practitioner"]["reference"]]["identifier"][0]["value"] == "OB1"
    assert director["code"][0]["coding"][0]["code"] == "MDIR"
    assert found[director["practitioner"]["reference"]]["identifier"][0]["value"] == "MD1"
    org = found[director["organization"]["reference"]]
    assert org["name"] == "Lab Inc"
    assert org["address"][0]["city"] == "Town"


def test_same_doctor_in_the_same_role_is_one_practitioner_role() -> None:
    second = "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L|||||F|||||OB1^Observer^Otto^^^^^^HOSP"
    found = entries(ORU + second + "\r")
    observers = [
        r
        for r in of(found, "PractitionerRole")
        if r["code"][0]["coding"][0]["code"] == "responsibleObserver"
    ]
    assert len(observers) == 1
    assert len(of(found, "Observation")) == 2


def test_mdm_common_order_is_a_service_request_the_document_relates_to() -> None:
    found = entries(MDM)
    (request,) = of(found, "ServiceRequest")
    assert request["identifier"][0]["value"] == "ORD9"
    (doc,) = of(found, "DocumentReference")
    related = [r["reference"] for r in doc["context"]["related"]]
    assert found[related[0]] is request


def test_vxu_order_is_a_service_request_and_its_obx_an_observation() -> None:
    found = entries(VXU)
    (request,) = of(found, "ServiceRequest")
    assert request["identifier"][0]["value"] == "IZ9"
    (obs,) = of(found, "Observation")
    assert obs["valueCodeableConcept"]["coding"][0]["code"] == "V02"
    (imm,) = of(found, "Immunization")
    (ordering,) = imm["performer"]  # ORC[Immunization]: ORC-12, function OP
    assert ordering["function"]["coding"][0]["code"] == "OP"
    role = found[ordering["actor"]["reference"]]
    assert found[role["practitioner"]["reference"]]["identifier"][0]["value"] == "NP1"


def test_pharmacy_and_schedule_observations() -> None:
    rde = entries(RDE)
    (obs,) = of(rde, "Observation")
    (request,) = of(rde, "MedicationRequest")
    assert rde[request["supportingInformation"][0]["reference"]] is obs
    assert obs["valueQuantity"]["value"] == 70
    (height,) = of(entries(SIU), "Observation")
    assert height["code"]["coding"][0]["code"] == "8302-2"


def test_ft1_is_a_charge_item_in_an_order_message() -> None:
    (charge,) = of(entries(ORM_CHARGE), "ChargeItem")
    assert charge["code"]["coding"][0]["code"] == "99213"


def test_iam_is_an_allergy_and_evn_5_the_provenance_enterer() -> None:
    found = entries(A60)
    (allergy,) = of(found, "AllergyIntolerance")
    assert allergy["code"]["coding"][0]["code"] == "PCN"
    assert allergy["onsetDateTime"] == "2023-01-01"
    assert allergy["recordedDate"].startswith("2024-01-02")
    (provenance,) = of(found, "Provenance")
    enterer = next(a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == "enterer")
    assert found[enterer["who"]["reference"]]["identifier"][0]["value"] == "OP7"


def test_a28_with_a_visit_number_makes_the_encounter_and_a_placeholder_pv1_none() -> None:
    (encounter,) = of(entries(A28), "Encounter")
    assert encounter["identifier"][0]["value"] == "V100"
    assert of(entries(message("ADT^A28^ADT_A05", "PV1||N")), "Encounter") == []


def test_obx_of_an_order_without_obr_supports_it() -> None:
    found = entries(ORC_ONLY_OBX)
    (request,) = of(found, "ServiceRequest")
    (obs,) = of(found, "Observation")
    assert found[request["supportingInfo"][0]["reference"]] is obs


def test_guarantor_is_a_related_person_guaranteeing_an_account() -> None:
    found = entries(GUARANTOR)
    (account,) = of(found, "Account")
    (guarantor,) = account["guarantor"]
    person = found[guarantor["party"]["reference"]]
    assert person["resourceType"] == "RelatedPerson"
    assert person["name"][0]["family"] == "Doe"
    assert person["relationship"][0]["coding"][0]["code"] == "SPS"
    assert person["address"][0]["city"] == "Town"
    assert guarantor["period"] == {"start": "2024-01-01"}
    assert account["subject"][0]["reference"] == next(
        url for url, r in found.items() if r["resourceType"] == "Patient"
    )


def test_self_guarantor_is_the_patient_on_the_pid_18_account() -> None:
    found = entries(SELF_GUARANTOR)
    (account,) = of(found, "Account")
    assert account["identifier"][0]["value"] == "ACC7"
    assert found[account["guarantor"][0]["party"]["reference"]]["resourceType"] == "Patient"
    assert of(found, "RelatedPerson") == []


@pytest.fixture(params=sorted(ENGINE_FACTORIES))
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[FhirService]:
    storage = await ENGINE_FACTORIES[request.param](tmp_path)
    try:
        yield FhirService(storage, base_url="http://test/fhir")
    finally:
        await storage.close()


async def test_new_maps_commit_and_replay_changes_nothing(service: FhirService) -> None:
    for raw in MESSAGES:
        bundle = convert(raw).bundle
        first = await call(service, "POST", "", bundle)
        assert all(e["response"]["status"][:3] in ("200", "201") for e in first["entry"])
        again = await call(service, "POST", "", bundle)
        statuses = [e["response"]["status"] for e in again["entry"]]
        assert all(s.startswith("200") for s in statuses), statuses
    roles = await call(service, "GET", "PractitionerRole", query=(("_summary", "count"),))
    assert roles["total"] == 4  # ORC-12 of the ORM and the VXU, OBX-16, OBX-25
