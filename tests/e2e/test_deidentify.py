"""De-identification of a loaded synthetic population, through `fhir-server deidentify`.

Synthetic patient records (bench/records.py, plus a 95-year-old with every kind of
identifier the generator leaves out) are loaded through the service into a SQLite file,
exported as NDJSON per type, then de-identified by the command. A checker scans every
element of every output line for the Safe Harbor identifier kinds, checks that every
reference resolves within the output, and that the date-shift profile moves all dates
of one patient by one offset (so every interval within a patient is kept).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.records import record_bundles
from fhir_server.context import SYSTEM
from fhir_server.deidentify import Deidentifier, deidentify_dir
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.storage.sqlite import SQLiteStorage

FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}")
PHONE = re.compile(r"\d{3}[\s.-]\d{4}")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")
IP = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
URL = re.compile(
    r"https?://(?!(hl7\.org|terminology\.hl7\.org|loinc\.org|snomed\.info|www\.nlm\.nih\.gov|unitsofmeasure\.org|urn:))"
)
FORBIDDEN_KEYS = {
    "telecom",
    "photo",
    "line",
    "city",
    "district",
    "note",
    "data",
    "div",
    "presentedForm",
    "attachment",
    "subscriberId",
    "serialNumber",
    "udiCarrier",
    "contact",
}

ELDER = {
    "resourceType": "Patient",
    "id": "elder",
    "text": {
        "status": "generated",
        "div": '<div xmlns="http://www.w3.org/1999/xhtml">Ida Quorn</div>',
    },
    "identifier": [
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
        {
            "type": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "DL"}
                ]
            },
            "system": "urn:dmv",
            "value": "D1234567",
        },
        {"system": "urn:plan", "value": "PLAN-77812"},
    ],
    "name": [{"family": "Quorn", "given": ["Ida"]}],
    "telecom": [
        {"system": "email", "value": "ida.quorn@example.org"},
        {"system": "fax", "value": "617-555-0199"},
        {"system": "url", "value": "https://ida.example.org"},
    ],
    "birthDate": "1930-02-11",
    "address": [
        {
            "line": ["7 Juniper Way"],
            "city": "Tinyville",
            "postalCode": "03601",
            "state": "NH",
            "country": "US",
        }
    ],
    "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo="}],
    "contact": [
        {"name": {"family": "Quornson"}, "telecom": [{"system": "phone", "value": "603-555-0100"}]}
    ],
}
ELDER_OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "note"},
    "subject": {"reference": "Patient/elder", "display": "Ida Quorn"},
    "effectiveDateTime": "2024-03-04T10:00:00Z",
    "valueString": (
        "Called 617-555-0142 from 10.1.2.3, wrote to ida.quorn@example.org on 2024-03-01"
    ),
    "note": [{"text": "Ida Quorn prefers mornings"}],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The loaded population exported as NDJSON, one file per type."""
    import asyncio

    folder = tmp_path_factory.mktemp("deid")

    async def load() -> None:
        storage = SQLiteStorage(str(folder / "fhir.db"))
        await storage.open()
        try:
            svc = FhirService(storage)
            for bundle in record_bundles(1, seed=7):
                response = await svc.handle(Request("POST", "", body=bundle, context=SYSTEM))
                assert response.status == 200
            await svc.handle(Request("PUT", "Patient/elder", body=ELDER, context=SYSTEM))
            await svc.handle(Request("POST", "Observation", body=ELDER_OBSERVATION, context=SYSTEM))
            out = folder / "export"
            out.mkdir()
            for type in sorted(svc.resource_types):
                lines = [data async for data in svc.export(SYSTEM, type)]
                if lines:
                    (out / f"{type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
        finally:
            await storage.close()

    asyncio.run(load())
    yield folder / "export"


def _lines(folder: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line)
        for p in sorted(folder.glob("*.ndjson"))
        for line in p.read_bytes().splitlines()
        if line
    ]


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, string) for every string value (and, as path `key:name`, every key)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"key:{k}", k
            yield from _strings(v, f"{path}.{k}")
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, path)
    elif isinstance(value, str):
        yield path, value


def _secrets(resources: list[dict[str, Any]]) -> set[str]:
    """What identifies someone in the input: names, identifier, telecom and address values,
    and every resource id."""
    found: set[str] = set()
    for r in resources:
        found.add(r["id"])
        if r["resourceType"] in ("Patient", "Practitioner", "RelatedPerson"):
            for name in r.get("name", []):
                found.update(n for n in [name.get("family"), *name.get("given", [])] if n)
            for address in r.get("address", []):
                found.update(
                    [
                        *address.get("line", []),
                        address.get("city", ""),
                        address.get("postalCode", ""),
                    ]
                )
            found.update(t["value"] for t in r.get("telecom", []))
        found.update(i["value"] for i in r.get("identifier", []) if "value" in i)
    # a family name that is also a term of the data ("White", a race) identifies no one there
    vocabulary = {v for r in resources for p, v in _strings(r) if p.endswith((".display", ".code"))}
    return {s for s in found if len(s) >= 4} - vocabulary


def _ids(resources: list[dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources}


def check(source: list[dict[str, Any]], output: list[dict[str, Any]], *, dates: bool) -> list[str]:
    """Every identifier kind the checker finds in `output`, as `path: value` lines.

    An identifying value counts where it stands as a word of its own: a ZIP code such as
    03601 found inside a 32-hex-digit pseudonym is chance, not a leak."""
    alternatives = "|".join(re.escape(s) for s in sorted(_secrets(source)))
    secrets = re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])")
    found: list[str] = []
    ids = _ids(output)
    for resource in output:
        for path, text in _strings(resource):
            key = path.rsplit(".", 1)[-1]
            if path.startswith("key:"):
                if text in FORBIDDEN_KEYS:
                    found.append(f"{resource['resourceType']}: element {text} present")
                continue
            if secrets.search(text):
                found.append(f"{path}: identifying value {text!r}")
            for kind, pattern in (("phone", PHONE), ("email", EMAIL), ("ip", IP), ("url", URL)):
                if pattern.search(text) and key not in ("system", "url", "profile", "code"):
                    found.append(f"{path}: {kind} {text!r}")
            if dates and FULL_DATE.search(text):
                found.append(f"{path}: full date {text!r}")
            if key == "postalCode" and not re.fullmatch(r"\d{3}", text):
                found.append(f"{path}: postal code {text!r}")
            if key == "reference" and not text.startswith("#") and text not in ids:
                found.append(f"{path}: dangling reference {text!r}")
    return found


def test_safe_harbor_leaves_no_identifier(exported: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "fhir_server.cli",
        "deidentify",
        "--profile",
        "safe-harbor",
        "--in",
        str(exported),
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ)
    assert done.returncode == 0, done.stderr
    source, output = _lines(exported), _lines(out)
    assert len(output) == len(source) and len(source) > 150
    assert check(source, output, dates=True) == []
    elder = next(r for r in output if r["resourceType"] == "Patient" and "birthDate" not in r)
    assert elder["extension"][-1]["valueString"] == "90+"
    assert {a.get("postalCode") for a in elder["address"]} == {"000"}  # a small ZIP area
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["changes"]["Patient.name"]["removed"] == 2
    assert report["changes"]["Patient.birthDate"]["aggregated as 90+"] == 1
    assert report["changes"]["Observation.valueString"]["scrubbed"] >= 1


def test_the_checker_finds_what_was_left_in(exported: Path) -> None:
    source = _lines(exported)
    found = check(source, source, dates=True)  # the checker is not blind
    for kind in ("identifying value", "full date", "phone", "email", "ip", "element telecom"):
        assert any(kind in line for line in found), kind


def test_the_checker_takes_values_as_words(exported: Path) -> None:
    """A value inside a longer run of letters and digits is chance (CI once saw the elder's
    ZIP inside a random pseudonym); the same value as a word of free text is a leak."""
    source = _lines(exported)
    chance = {"resourceType": "Basic", "id": "x", "identifier": [{"value": "a8d5b5d95036011c"}]}
    leak = {"resourceType": "Basic", "id": "y", "identifier": [{"value": "zip 03601, Quorn"}]}
    assert check(source, [chance], dates=False) == []
    found = check(source, [leak], dates=False)
    assert found == [".identifier.value: identifying value 'zip 03601, Quorn'"]


def _flat(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flat(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flat(v, f"{path}[{i}]")
    elif isinstance(value, str):
        yield path, value


def _moment(text: str) -> datetime | None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(T.*)?", text):
        return None
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time())
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def test_date_shift_keeps_every_interval_within_a_patient(exported: Path, tmp_path: Path) -> None:
    run = Deidentifier("date-shift", b"k" * 32)
    deidentify_dir(exported, tmp_path / "out", run)
    source, output = _lines(exported), _lines(tmp_path / "out")
    assert check(source, output, dates=False) == []
    by_id = {(r["resourceType"], r["id"]): r for r in output}
    shifts: dict[str, set[Any]] = {}
    compared = 0
    for before in source:
        after = by_id[
            (before["resourceType"], run.pseudonym(f"{before['resourceType']}/{before['id']}"))
        ]
        owner = (
            before["id"]
            if before["resourceType"] == "Patient"
            else str(before.get("subject", before.get("patient", {})).get("reference", ""))
        )
        kept = dict(_flat(after))
        for path, value in _flat(before):
            old, new = _moment(value), _moment(kept.get(path, ""))
            if old is not None and new is not None:
                shifts.setdefault(owner.removeprefix("Patient/"), set()).add(new - old)
                compared += 1
    patients = {r["id"] for r in source if r["resourceType"] == "Patient"} - {"elder"}
    assert compared > 150 and patients <= shifts.keys()
    for patient in patients:
        assert len(shifts[patient]) == 1, f"{patient}: dates moved by {shifts[patient]}"
        (shift,) = shifts[patient]
        assert shift.days != 0 and abs(shift.days) <= 365
