"""The coverage the README's table claims: one message of every listed event, sent over
MLLP (real TCP) to the listener, is accepted (AA) and produces the resources its family's
row lists; and the README's table is the one the registry generates."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from adapters.hl7v2.ack import read_ack
from adapters.hl7v2.inbox import Inbox
from adapters.hl7v2.ingest import Ingestor
from adapters.hl7v2.mllp import MllpListener
from adapters.hl7v2.registry import FAMILIES, coverage_table
from fhir_server.interactions.service import FhirService
from tests.support.engines import ENGINE_FACTORIES
from tests.support.loaded import call

README = Path(__file__).resolve().parents[3] / "README.md"
ADMINISTRATION = (
    "PV1|1|I|W1^101^A^HOSP||||D1^Doctor^Dora^^^^^^HOSP||||||||||||V{n}^^^HOSP",
    "NK1|1|Kin^Kim|SPO",
    "AL1|1|DA|PCN^Penicillin^RXNORM",
    "DG1|1||I10^Hypertension^I10",
    "PR1|1||47.0^Appendectomy^I9CP||20240101",
    "IN1|1|PLAN1^Plan^HOSP|INS1^^^HOSP|Insurer Inc",
)
BODY = {
    "ADT": (*ADMINISTRATION, "OBX|1|NM|8302-2^Height^LN||180|cm|||||F"),
    "BAR": ADMINISTRATION,
    "DFT": (*ADMINISTRATION, "FT1|1|T{n}||20240101||CG|99213^Visit^C4|||1"),
    "MDM": (
        "PV1|1|O||||||||||||||||||V{n}^^^HOSP",
        "ORC|SC|D{n}^HOSP",
        "OBR|1|D{n}^HOSP||18748-4^Report^LN",
        "TXA|1|CN|TX|||20240101||||||DOC{n}^HOSP",
        "OBX|1|TX|11506-3^Note^LN||Text||||||F",
    ),
    "OMG": ("ORC|NW|P{n}^HOSP", "OBR|1|P{n}^HOSP||24323-8^CMP^LN"),
    "OML": ("ORC|NW|P{n}^HOSP", "OBR|1|P{n}^HOSP||24323-8^CMP^LN", "SPM|1|S{n}||BLD"),
    "ORM": (
        "ORC|NW|P{n}^HOSP",
        "OBR|1|P{n}^HOSP||24323-8^CMP^LN",
        "OBX|1|NM|29463-7^Weight^LN||70|kg|||||F",
    ),
    "ORU": ("OBR|1|P{n}^HOSP|F{n}^LAB|24323-8^CMP^LN", "OBX|1|NM|2345-7^Glucose^LN||90|mg/dL"),
    "OUL": (
        "SPM|1|S{n}||BLD",
        "OBR|1|P{n}^HOSP|F{n}^LAB|24323-8^CMP^LN",
        "OBX|1|NM|2345-7^Glucose^LN||90|mg/dL",
    ),
    "PPR": ("PRB|AD|20240101|I10^Hypertension^I10|PRB{n}^HOSP",),
    "RDE": (
        "ORC|NW|RX{n}^HOSP",
        "RXE|^^^20240101|197361^Amlodipine^RXNORM|5",
        "OBX|1|NM|29463-7^Weight^LN||70|kg|||||F",
    ),
    "RDS": (
        "ORC|NW|RX{n}^HOSP",
        "RXE|^^^20240101|197361^Amlodipine^RXNORM|5",
        "RXD|1|197361^Amlodipine^RXNORM|20240102|30|TAB",
    ),
    "REF": ("RF1|A||RT^Referral||R|REF{n}^HOSP",),
    "SIU": (
        "SCH|A{n}^HOSP|A{n}^HOSP|||||||30|MIN|^^^20250101090000",
        "OBX|1|NM|8302-2^Height^LN||180|cm|||||F",
    ),
    "VXU": (
        "ORC|RE||IZ{n}^HOSP",
        "RXA|0|1|20240101||08^HepB^CVX|0.5|mL^mL^UCUM",
        "OBX|1|CE|64994-7^Funding^LN||V02^VFC eligible^HL70064||||||F",
    ),
}
NOT_PRODUCED: dict[tuple[str, str], set[str]] = {}  # (family, event) -> types it need not make
CASES = [(f.message_type, event) for f in FAMILIES for event in sorted(f.events)]


def message(kind: str, event: str, n: int) -> bytes:
    if (kind, event) == ("ADT", "A40"):
        body: tuple[str, ...] = ("MRG|OLD{n}^^^HOSP",)
    else:
        body = BODY[kind]
    segments = [
        f"MSH|^~\\&|APP|HOSP|FHIR|HUB|20240101120000||{kind}^{event}|COV{n}|P|2.5.1",
        f"EVN|{event}|20240101120000",
        f"PID|1||MRN{n}^^^HOSP^MR||Cover^Age||19700101|F||||||||||ACCT{n}^^^HOSP",
        *(s.format(n=n) for s in body),
    ]
    return ("\r".join(segments) + "\r").encode()


def expected(kind: str, event: str) -> set[str]:
    if (kind, event) == ("ADT", "A40"):
        return {"Patient"}
    family = next(f for f in FAMILIES if f.message_type == kind)
    return set(family.resources) - NOT_PRODUCED.get((kind, event), set()) - {"Binary"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], set[str]]:
    """Send every case over one MLLP connection; what each produced, found by its patient."""
    return asyncio.run(_run(tmp_path_factory.mktemp("coverage")))


async def _run(folder: Path) -> dict[tuple[str, str], set[str]]:
    storage = await ENGINE_FACTORIES["sqlite"](folder)
    service = FhirService(storage, base_url="http://test/fhir")
    inbox = await Inbox(folder / "inbox.db").open()
    listener = await MllpListener(Ingestor(service, inbox), "127.0.0.1", 0).start()
    found: dict[tuple[str, str], set[str]] = {}
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
        for n, (kind, event) in enumerate(CASES):
            writer.write(b"\x0b" + message(kind, event, n) + b"\x1c\r")
            await writer.drain()
            ack = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
            if read_ack(ack[1:-2]).code != "AA":
                found[(kind, event)] = {f"not accepted: {ack!r}"}
                continue
            found[(kind, event)] = await _produced(service, n)
        writer.close()
    finally:
        await listener.stop()
        await inbox.close()
        await storage.close()
    return found


async def _produced(service: FhirService, n: int) -> set[str]:
    patients = await call(service, "GET", "Patient", query=(("identifier", f"urn:id:HOSP|MRN{n}"),))
    if not patients.get("entry"):
        return set()
    patient = f"Patient/{patients['entry'][0]['resource']['id']}"
    kinds = {"Patient"}
    for family in FAMILIES:
        for kind in set(family.resources) - kinds - {"Binary"}:
            param = "subject" if kind == "Account" else "patient"
            hits = await call(service, "GET", kind, query=((param, patient),))
            if hits.get("entry"):
                kinds.add(kind)
    return kinds


@pytest.mark.parametrize(("kind", "event"), CASES, ids=[f"{k}^{e}" for k, e in CASES])
def test_every_listed_event_is_accepted_and_mapped(
    results: dict[tuple[str, str], set[str]], kind: str, event: str
) -> None:
    assert expected(kind, event) <= results[(kind, event)]


def test_readme_table_is_the_registrys() -> None:
    assert coverage_table() in README.read_text(encoding="utf-8")


def test_every_family_has_a_message_map() -> None:
    from adapters.hl7v2.convert.messages import MAPS

    assert set(MAPS) == {f.message_type for f in FAMILIES}
