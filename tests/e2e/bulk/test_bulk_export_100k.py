"""Bulk Data export of a 100,000-resource database over real HTTP, with writes going on.

A `fhir-server serve` process (authorization on) on a SQLite file of 50,000 Patients and
50,000 Observations (built through the storage engine, see tests/support/population.py);
`fhir-server bulk export` (a subprocess, as a Backend Services client) exports it while a
thread keeps writing over HTTP (new Patients and Observations, updates, deletions), each
write made after checking that the export is still running. Then: the counts per type in
the files equal the database's at the kick-off, every line parses as a resource of its
file's type, no write made during the export is in it, the server's resident memory
(server process and its workers, sampled every 50 ms from the kick-off to the end of the
download) stays within 50 MB of its idle value, and a `_since` export from the first one's
`transactionTime` holds exactly the writes made during it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey

from fhir_server.cli.bulk import STATE, BulkClient, Credentials
from tests.e2e.bulk.test_bulk_export_http import cli
from tests.support.population import build
from tests.support.server import ServerProcess

PATIENTS = 50_000  # and one Observation each: 100,000 resources
TYPES = ("Patient", "Observation")
RSS_GROWTH_MB = 50.0


async def register(database: Path, jwks: dict[str, Any], base: str) -> dict[str, str]:
    """A Backend Services client (its public key) and an admin token for the writes."""
    from fhir_server.assembly import open_auth, open_service
    from fhir_server.auth.clients import new_client
    from fhir_server.cli.auth import mint_token
    from fhir_server.settings import Settings

    settings = Settings(database=str(database), auth="on")
    async with open_service(settings) as service, open_auth(settings, service) as auth:
        doc, _ = new_client(
            name="exporter",
            kind="asymmetric",
            redirect_uris=[],
            scopes=["system/*.rs"],
            jwks_url=None,
            jwks=jwks,
            jku=None,
        )
        auth.store.add_client(doc)
        return {"client_id": doc["id"], "admin": mint_token(auth, "system/*.*", None, base)}


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("bulk100k")
    database = folder / "fhir.db"
    started = time.monotonic()
    build(database, PATIENTS)
    built = time.monotonic() - started
    key = RSAKey.generate_key(2048, parameters={"kid": "bulk-100k"}, private=True)
    (folder / "client.key.json").write_text(json.dumps(key.as_dict(private=True)))
    server = ServerProcess(database, FHIR_AUTH="on", FHIR_EXPORT_FILE_BYTES=str(4 << 20))
    ids = asyncio.run(register(database, {"keys": [key.as_dict(private=False)]}, server.base))
    server.start(timeout=120)
    print(f"built {2 * PATIENTS:,} resources in {built:.1f} s")  # noqa: T201 - with -s
    yield {"server": server, "folder": folder, **ids}
    server.stop()


def tree_rss_kb(pid: int) -> int:
    """VmRSS of `pid` and every process below it (the server and its workers), in kB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except (FileNotFoundError, ProcessLookupError):
            continue  # a worker that just exited
        total += next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
        for task in tasks:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                pending.extend(int(c) for c in (task / "children").read_text().split())
    return total


class Sampler(threading.Thread):
    """The highest resident memory of the server's processes, every 50 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.samples = pid, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            self.samples += 1
            self.done.wait(0.05)


class Writer(threading.Thread):
    """Writes over HTTP while the export runs: before each write it checks (as the client
    that started the export) that the status is still 202, and stops at the manifest."""

    def __init__(self, big: dict[str, Any], out: Path) -> None:
        super().__init__(daemon=True)
        self.big, self.out = big, out
        self.created: list[str] = []  # Type/id
        self.updated: list[str] = []
        self.deleted: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # reported by the test
            self.error = error

    def _run(self) -> None:
        state = self.out / STATE
        deadline = time.monotonic() + 120
        while not state.exists():  # the client saves the status URL once the kick-off is 202
            assert time.monotonic() < deadline, "no kick-off"
            time.sleep(0.01)
        status = json.loads(state.read_text())["status"]
        base = self.big["server"].base
        credentials = Credentials(
            self.big["client_id"], self.big["folder"] / "client.key.json", None, "system/*.rs"
        )
        headers = {"Authorization": f"Bearer {self.big['admin']}"}
        with (
            BulkClient(base, self.out, credentials, say=lambda _: None) as owner,
            httpx.Client(base_url=base, timeout=60, headers=headers) as http,
        ):
            n = 0
            while time.monotonic() < deadline:
                running = owner.request("GET", status, headers={"Accept": "application/json"})
                if running.status_code != 202:
                    assert running.status_code == 200, running.text
                    return
                self._write(http, n)
                n += 1
                time.sleep(0.02)

    def _write(self, http: httpx.Client, n: int) -> None:
        if n % 4 == 0:  # a new Patient and an Observation about it
            patient = {"resourceType": "Patient", "id": f"late{n}", "gender": "other"}
            assert http.put(f"Patient/late{n}", json=patient).status_code == 201
            obs = {
                "resourceType": "Observation",
                "id": f"late-o{n}",
                "status": "final",
                "code": {"text": "written during the export"},
                "subject": {"reference": f"Patient/late{n}"},
            }
            assert http.put(f"Observation/late-o{n}", json=obs).status_code == 201
            self.created += [f"Patient/late{n}", f"Observation/late-o{n}"]
        elif n % 4 in (1, 2):  # a new version of one of the population
            patient = {"resourceType": "Patient", "id": f"p{n}", "gender": "unknown"}
            assert http.put(f"Patient/p{n}", json=patient).status_code == 200
            self.updated.append(f"Patient/p{n}")
        else:
            assert http.delete(f"Observation/o{n}").status_code in (200, 204)
            self.deleted.append(f"Observation/o{n}")


def read_folder(folder: Path, suffix: str = "ndjson") -> dict[str, dict[str, Any]]:
    """Every line of the folder's `<Type>.<n>.<suffix>` files, parsed, by Type/id; each
    line a resource of its file's type, no Type/id twice."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob(f"*.{suffix}")):
        type = path.name.split(".")[0]
        with path.open("rb") as lines:
            for line in lines:
                resource = json.loads(line)
                if suffix == "deleted-ndjson":  # a Bundle with one DELETE entry
                    key = resource["entry"][0]["request"]["url"]
                else:
                    assert resource["resourceType"] == type, path.name
                    key = f"{type}/{resource['id']}"
                assert key not in found, key
                found[key] = resource
    return found


def export(big: dict[str, Any], out: Path, *args: str) -> str:
    return cli(
        big["folder"] / "unused.db",  # the client opens no database
        "bulk",
        "export",
        "--from",
        big["server"].base,
        "--to",
        str(out),
        "--client-id",
        big["client_id"],
        "--key",
        str(big["folder"] / "client.key.json"),
        "--type",
        ",".join(TYPES),
        *args,
    )


def test_a_100k_export_under_writes_is_exact_in_flat_memory_and_since_has_the_writes(
    big: dict[str, Any],
) -> None:
    server: ServerProcess = big["server"]
    assert server.process is not None
    headers = {"Authorization": f"Bearer {big['admin']}"}
    with httpx.Client(base_url=server.base, timeout=60, headers=headers) as http:
        counts = {t: http.get(t, params={"_summary": "count"}).json()["total"] for t in TYPES}
    assert counts == {"Patient": PATIENTS, "Observation": PATIENTS}
    time.sleep(1.0)  # settle after the count queries
    idle_kb = min(tree_rss_kb(server.process.pid) for _ in range(5))

    out = big["folder"] / "first"
    sampler, writer = Sampler(server.process.pid), Writer(big, out)
    sampler.start()
    writer.start()
    started = time.monotonic()
    try:
        said = export(big, out)
    finally:
        sampler.done.set()
        sampler.join()
        writer.join(120)
    exported_in = time.monotonic() - started
    assert writer.error is None, writer.error

    checking = time.monotonic()
    found = read_folder(out)
    by_type = {t: sum(k.startswith(f"{t}/") for k in found) for t in TYPES}
    assert by_type == counts  # as of the kick-off: nothing written during it
    assert f"{2 * PATIENTS} resources in" in said
    assert len(list(out.glob("Observation.*.ndjson"))) > 1  # split at 4 MB
    written = writer.created + writer.updated + writer.deleted
    assert len(writer.created) >= 2 and writer.updated and writer.deleted  # during the export
    assert not set(writer.created) & set(found)
    for key in writer.updated:  # still the version of the kick-off
        assert found[key]["meta"]["versionId"] == "1" and found[key]["gender"] != "unknown"
    assert set(writer.deleted) <= set(found)  # deleted after the kick-off: still in it
    growth_mb = (sampler.peak_kb - idle_kb) / 1024
    assert sampler.samples > 10
    assert growth_mb <= RSS_GROWTH_MB, f"RSS {idle_kb // 1024} MB idle, grew {growth_mb:.0f} MB"

    credentials = Credentials(
        big["client_id"], big["folder"] / "client.key.json", None, "system/*.rs"
    )
    status = json.loads((out / STATE).read_text())["status"]
    with BulkClient(server.base, out, credentials, say=lambda _: None) as owner:
        manifest = owner.wait(status)  # the finished export's manifest
    since = big["folder"] / "since"
    export(big, since, "--since", manifest["transactionTime"])
    changed = read_folder(since)
    assert set(changed) == set(writer.created) | set(writer.updated)
    assert all(changed[k]["meta"]["versionId"] == "2" for k in writer.updated)
    assert set(read_folder(since, "deleted-ndjson")) == set(writer.deleted)
    checked_in = time.monotonic() - checking
    print(  # noqa: T201 - with -s
        f"export {exported_in:.1f} s ({len(written)} writes during it), checks and _since "
        f"export {checked_in:.1f} s; RSS {idle_kb // 1024} MB idle, peak +{growth_mb:.1f} MB"
    )
