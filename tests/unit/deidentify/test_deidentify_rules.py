"""De-identification rules on single resources: references, identifiers, dates, addresses."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fhir_server.cli import app
from fhir_server.deidentify import Deidentifier
from fhir_server.deidentify.rules import shift
from fhir_server.deidentify.text import scrub

TODAY = date(2026, 12, 1)


def test_references_are_rewritten_consistently_and_conditional_ones_dropped() -> None:
    run = Deidentifier("safe-harbor", b"x" * 32, today=TODAY)
    patient = run.transform({"resourceType": "Patient", "id": "p1"})
    obs = run.transform(
        {
            "resourceType": "Observation",
            "id": "o1",
            "subject": {"reference": "http://other.example/fhir/Patient/p1", "display": "Ann"},
            "performer": [{"reference": "Practitioner?identifier=urn:npi|123"}],
            "focus": [{"reference": "#c1"}],
        }
    )
    assert patient is not None and obs is not None
    assert obs["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert "performer" not in obs and obs["focus"] == [{"reference": "#c1"}]
    again = Deidentifier("safe-harbor", b"y" * 32, today=TODAY).transform(
        {"resourceType": "Patient", "id": "p1"}
    )
    assert again is not None and again["id"] != patient["id"]  # another key, other pseudonyms


def test_identifiers_removed_by_kind_or_pseudonymized() -> None:
    run = Deidentifier("safe-harbor", b"x" * 32, today=TODAY)
    out = run.transform(
        {
            "resourceType": "Practitioner",
            "id": "d",
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999999"},
                {"type": {"coding": [{"code": "DL"}]}, "value": "D123"},
            ],
        }
    )
    assert out is not None
    assert out["identifier"] == [
        {
            "system": "urn:deidentified",
            "value": run.pseudonym("identifier|http://hl7.org/fhir/sid/us-npi|9999999999"),
        }
    ]


def test_safe_harbor_dates_addresses_and_instants() -> None:
    run = Deidentifier("safe-harbor", today=TODAY)
    out = run.transform(
        {
            "resourceType": "Patient",
            "id": "p",
            "birthDate": "1980-05-17",
            "deceasedDateTime": "2025-01-02T03:04:05Z",
            "meta": {"lastUpdated": "2026-01-01T00:00:00Z", "profile": ["http://x/p"]},
            "address": [
                {"line": ["1 Main"], "city": "X", "postalCode": "02139", "state": "MA"},
                {"city": "Paris", "postalCode": "75001", "country": "FR"},
            ],
        }
    )
    assert out is not None
    assert (out["birthDate"], out["deceasedDateTime"]) == ("1980", "2025")
    assert out["meta"] == {"profile": ["http://x/p"]}
    assert out["address"] == [{"state": "MA", "postalCode": "021"}, {"country": "FR"}]


@pytest.mark.parametrize(
    ("birth", "aggregated"),
    [("1936-12-02", False), ("1936-12-01", True), ("1900-01-01", True), ("1936", True)],
)
def test_ages_of_90_or_more_are_aggregated(birth: str, aggregated: bool) -> None:
    out = Deidentifier("date-shift", today=TODAY).transform(
        {"resourceType": "Patient", "id": "p", "birthDate": birth}
    )
    assert out is not None
    assert ("birthDate" not in out) is aggregated
    assert (out.get("extension", [{}])[-1].get("valueString") == "90+") is aggregated


def test_date_shift_keeps_precision() -> None:
    offset = timedelta(days=-40)
    assert shift("2024-03-15", offset) == "2024-02-04"
    assert shift("2024-03", offset) == "2024-01"
    assert shift("2024-03-15T10:11:12.5Z", offset) == "2024-02-04T10:11:12.500000Z"
    assert shift("2024-03-15T10:11:12+02:00", offset) == "2024-02-04T10:11:12+02:00"


def test_binary_and_media_are_dropped_and_reported() -> None:
    run = Deidentifier("safe-harbor")
    assert run.transform({"resourceType": "Binary", "id": "b", "data": "AAAA"}) is None
    assert run.report.as_json()["dropped"] == {"Binary": 1}


def test_scrub() -> None:
    text = (
        "Call 617-555-0100 or mail a@b.org, see https://x.org from 192.168.0.1 "
        "on 2020-01-02, SSN 123-45-6789"
    )
    assert scrub(text) == "Call [PHONE] or mail [EMAIL], see [URL] from [IP] on [DATE], SSN [SSN]"


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Deidentifier("k-anonymity")  # type: ignore[arg-type]


def test_the_command_refuses_bad_input_with_a_clear_message(tmp_path: Path) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "Patient.ndjson").write_text('{"resourceType": "Patient", "id": "a"}\n{oops\n')
    short = tmp_path / "short.key"
    short.write_bytes(b"k" * 8)
    base = ["deidentify", "--profile", "safe-harbor", "--in", str(source)]
    bad_line = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "out")])
    assert bad_line.exit_code == 1 and "Patient.ndjson line 2 is not JSON" in bad_line.output
    bad_key = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "o"), "--key-file", str(short)]
    )
    assert bad_key.exit_code == 2 and "at least 32 bytes" in bad_key.output
    same = CliRunner().invoke(app, [*base, "--out", str(source)])
    assert same.exit_code == 2 and "must differ" in same.output
    profile = CliRunner().invoke(
        app,
        ["deidentify", "--profile", "k-anon", "--in", str(source), "--out", str(tmp_path / "p")],
    )
    assert profile.exit_code == 2 and "not one of" in profile.output
