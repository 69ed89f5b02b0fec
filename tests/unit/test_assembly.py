"""The composition root: `open_service` builds the one service every way in uses, and
`start_background` starts (and stops) the background duties the settings ask for."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.hl7v2.runtime import Hl7Runtime
from fhir_server.assembly import (
    FULL_COLLECTION_EVERY,
    convert_options,
    open_service,
    start_background,
)
from fhir_server.context import SYSTEM
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.settings import Settings

ADT = (
    b"MSH|^~\\&|LAB|NORTH|FHIR|HUB|20240102030405||ADT^A04^ADT_A01|C1|P|2.5.1\r"
    b"EVN|A04|20240102030405\rPID|1||123^^^HOSP^MR||Doe^John||19800101|M\r"
)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The collector as a test found it: start_background freezes start-up objects and spaces
    out full collections."""
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def settings_in(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(database=str(tmp_path / "fhir.db"), **extra)


async def test_open_service_plugs_everything_in_and_closes(tmp_path: Path) -> None:
    async with open_service(settings_in(tmp_path, base_url="http://x/fhir")) as svc:
        names = {op.name for op in svc.operations}
        assert {
            "everything",
            "reindex",
            "lookup",
            "expand",
            "translate",
            "validate",
            "convert-hl7v2",
        } <= names
        assert svc.codes is not None  # terminology answers :in, :below...
        assert svc.base_url == "http://x/fhir"
        created = await svc.handle(
            Request("POST", "Patient", body={"resourceType": "Patient"}, context=SYSTEM)
        )
        assert created.status == 201
        storage = svc.storage
    with pytest.raises(RuntimeError, match="not open"):
        await storage.read("Patient", "x")
    assert FhirService(storage).operations == ()  # the core registers none by itself


async def test_no_background_duties_without_hl7_settings(tmp_path: Path, unfrozen: None) -> None:
    async with (
        open_service(settings_in(tmp_path)) as svc,
        start_background(settings_in(tmp_path), svc) as background,
    ):
        assert background.hl7 is None
        assert background.leadership.leading  # a lone process leads
        assert gc.get_freeze_count() > 0  # the serving process settles its heap all the same
        assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY


async def test_hl7_runs_while_the_block_does(tmp_path: Path, unfrozen: None) -> None:
    settings = settings_in(tmp_path, hl7_inbox=str(tmp_path / "inbox.db"))
    async with open_service(settings) as svc:
        async with start_background(settings, svc) as background:
            assert background.hl7 is not None
            acks = await background.hl7.exchange(ADT)
            assert b"MSA|AA|C1" in acks[-1]
            assert gc.get_freeze_count() > 0  # the composition root froze start-up objects
        with pytest.raises(RuntimeError, match="not open"):
            background.hl7.inbox.file  # noqa: B018 - the property raises once closed


async def test_the_hl7_runtime_leaves_the_collector_alone(tmp_path: Path, unfrozen: None) -> None:
    settings = settings_in(tmp_path, hl7_inbox=str(tmp_path / "inbox.db"))
    async with open_service(settings) as svc:
        hl7 = await Hl7Runtime.from_settings(settings, svc, convert_options(settings)).start()
        await hl7.stop()
    assert gc.get_freeze_count() == 0  # gc.freeze() is the process's decision, not the adapter's
