"""`fhir-server serve` refuses to start, with exit code 2 and one line saying why, on a
database file that is not ours, a schema newer than the code, a port in use and an
unreadable key file; and it leaves a file that is not ours untouched."""

from __future__ import annotations

import hashlib
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import free_port


def _serve(
    database: Path, *, port: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [
        str(Path(sys.executable).parent / "fhir-server"),
        "serve",
        "--port",
        str(port or free_port()),
    ]
    environment = {**os.environ, "FHIR_DATABASE": str(database), "FHIR_AUTH": "off", **(env or {})}
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def _refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Cannot start: ") and words in lines[0], lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    database.write_text("these are somebody's notes, not a database\n")
    before = _digest(database)
    _refused(_serve(database), "not a SQLite file")
    assert _digest(database) == before


def test_a_sqlite_database_of_another_program(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
    before = _digest(database)
    _refused(_serve(database), "another program")
    assert _digest(database) == before


def test_a_database_with_another_application_id(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE t (x)")
    _refused(_serve(database), "another program (application id 0x4d2)")


def test_a_schema_newer_than_the_code(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE resources (x)")
        conn.execute("PRAGMA user_version = 99")
    _refused(_serve(database), "newer than this server knows")


def test_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _refused(_serve(tmp_path / "fhir.db", port=port), f"cannot listen on 127.0.0.1:{port}")


@pytest.mark.parametrize("name", ["FHIR_TLS_KEY_FILE", "FHIR_TLS_CERT_FILE"])
def test_an_unreadable_key_file(tmp_path: Path, name: str) -> None:
    other = "FHIR_TLS_CERT_FILE" if name == "FHIR_TLS_KEY_FILE" else "FHIR_TLS_KEY_FILE"
    readable = tmp_path / "readable.pem"
    readable.write_text("-----BEGIN-----\n")
    env = {name: str(tmp_path / "missing.pem"), other: str(readable)}
    _refused(
        _serve(tmp_path / "fhir.db", env=env), f"{name} {tmp_path / 'missing.pem'} cannot be read"
    )


def test_half_a_tls_configuration(tmp_path: Path) -> None:
    _refused(_serve(tmp_path / "fhir.db", env={"FHIR_TLS_CERT_FILE": "cert.pem"}), "go together")


def test_our_own_database_from_before_the_application_id_still_opens(tmp_path: Path) -> None:
    """Files made before the application id was set (id 0, our schema) stay usable."""
    from fhir_server.storage.sqlite.schema import check_file

    database = tmp_path / "fhir.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE resources (x)")
        conn.execute("PRAGMA user_version = 3")
    assert check_file(database) is None
    assert check_file(tmp_path / "absent.db") is None


def test_a_default_monitoring_band_for_a_code_not_monitored(tmp_path: Path) -> None:
    bands = '{"85354-9": [null, 140]}'  # the panel's code: bands are per measure (8480-6...)
    result = _serve(tmp_path / "fhir.db", env={"FHIR_MONITORING_BANDS": bands})
    _refused(result, "FHIR_MONITORING_BANDS: 85354-9 not among")
