"""The patient-records bench data: deterministic, shaped like real synthetic records (heavy
claims, base64 notes, conditional references, long histories), and accepted by the
server as it is."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from bench.records import LONG_HISTORY_EVERY, directory_bundle, patient_bundle, record_bundles
from fhir_server.assembly import open_service
from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.settings import Settings


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    first = [orjson.dumps(b) for b in record_bundles(3, 5)]
    assert first == [orjson.dumps(b) for b in record_bundles(3, 5)]
    assert first != [orjson.dumps(b) for b in record_bundles(3, 6)]


def test_records_are_heavy_like_real_ones() -> None:
    bundles = record_bundles(LONG_HISTORY_EVERY, 1)
    assert bundles[0]["entry"][0]["request"]["method"] == "PUT"  # the directory
    sizes = [len(b["entry"]) for b in bundles[1:]]
    assert max(sizes) >= 1_500  # the long-history patient
    types = Counter(e["resource"]["resourceType"] for b in bundles[1:] for e in b["entry"])
    for kind in ("ExplanationOfBenefit", "Claim", "DocumentReference", "DiagnosticReport"):
        assert types[kind] > 0
    text = orjson.dumps(bundles[1]).decode()
    assert "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|" in text
    assert '"data":"' in text  # base64 notes


@pytest.mark.asyncio
async def test_the_server_accepts_the_records(tmp_path: Path) -> None:
    import random

    settings = Settings(database=str(tmp_path / "fhir.db"), auth="off")
    async with open_service(settings) as service:
        for bundle in (directory_bundle(), patient_bundle(random.Random(3), 0)):
            request = Request(method="POST", path="", body=bundle, context=SYSTEM)
            response = await service.handle(request)
            assert response.status == 200, response.body
        eob = await service.handle(
            Request(
                method="GET",
                path="ExplanationOfBenefit",
                query=(("_summary", "count"),),
                context=SYSTEM,
            )
        )
        body = orjson.loads(eob.body) if isinstance(eob.body, bytes) else eob.body
        assert body is not None and body["total"] > 0
