"""`fhir-server serve --workers N`: how many processes, and what the workers are told."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import fhir_server.api.server as api_server
import fhir_server.assembly as assembly
from fhir_server.cli import app
from fhir_server.cli.serve import usable_cores
from fhir_server.settings import Settings


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """What `serve` would start, recorded instead of started."""
    seen: dict[str, Any] = {}

    async def prepare(settings: Settings) -> None:
        seen["prepared"] = settings.database

    def run_workers(settings: Settings, workers: int) -> None:
        seen["workers"] = workers
        seen["env"] = os.environ.get("FHIR_WORKERS"), os.environ.get("FHIR_PORT")

    def run(app: Any, settings: Settings) -> None:
        seen["workers"] = 1

    monkeypatch.setattr(assembly, "prepare", prepare)
    monkeypatch.setattr(api_server, "run_workers", run_workers)
    monkeypatch.setattr(api_server, "run", run)
    monkeypatch.setenv("FHIR_DATABASE", str(tmp_path / "fhir.db"))
    monkeypatch.setenv("FHIR_AUTH", "off")
    for name in ("FHIR_WORKERS", "FHIR_PORT", "FHIR_HOST", "FHIR_MLLP_PORT"):
        monkeypatch.setenv(name, "")  # recorded, so that what `serve` sets is undone after
        monkeypatch.delenv(name)
    return seen


def test_the_default_is_one_worker_per_usable_core(started: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert started["workers"] == usable_cores() == len(os.sched_getaffinity(0))


def test_workers_are_told_the_settings_through_the_environment(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fhir_server.cli.serve.usable_cores", lambda: 8)
    result = CliRunner().invoke(app, ["serve", "--workers", "3", "--port", "9123"])
    assert result.exit_code == 0, result.output
    assert started["workers"] == 3
    assert started["env"] == ("3", "9123")  # what each worker's Settings() reads
    assert started["prepared"].endswith("fhir.db")  # schema and keys made ready first


def test_fhir_workers_1_is_the_single_process(
    started: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_WORKERS", "1")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    assert started == {"workers": 1}


def test_zero_workers_is_refused(started: dict[str, Any]) -> None:
    result = CliRunner().invoke(app, ["serve", "--workers", "0"])
    assert result.exit_code == 2
    assert "workers" not in started
