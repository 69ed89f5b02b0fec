"""Bulk export on every engine: the scan consistent to transactionTime, the saved jobs, and
a whole export run by the job runner (kick-off, run, manifest, files, resume, failure)."""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_server.bulk import BulkExport, Options, install, scan
from fhir_server.bulk.jobs import Job, context_to_json
from fhir_server.bulk.runner import MAX_ATTEMPTS
from fhir_server.bulk.scan import Selection, at_time
from fhir_server.context import SYSTEM
from fhir_server.errors import NotFound
from fhir_server.interactions.common import now_instant
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from fhir_server.storage.mongodb import engine as mongo_engine
from fhir_server.storage.sqlite import engine as sqlite_engine
from tests.support.engines import make_sqlite

ASYNC = {"prefer": "respond-async"}


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scans fetch 4 rows a query, so writes land between the batches of a scan."""
    monkeypatch.setattr(sqlite_engine, "ITER_BATCH", 4)
    monkeypatch.setattr(mongo_engine, "ITER_BATCH", 4)


async def put(svc: FhirService, type: str, id: str, **fields: Any) -> None:
    body = {"resourceType": type, "id": id, **fields}
    answer = await svc.handle(Request("PUT", f"{type}/{id}", body=body, context=SYSTEM))
    assert answer.status in (200, 201)


async def delete(svc: FhirService, type: str, id: str) -> None:
    await svc.handle(Request("DELETE", f"{type}/{id}", context=SYSTEM))


async def test_iter_latest_keeps_deletions_and_each_resource_once_under_writes(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    for n in range(10):
        await put(svc, "Patient", f"p{n}", gender="male")
    await delete(svc, "Patient", "p5")
    seen: list[tuple[str, bool]] = []
    async for rec in storage.iter_latest("Patient"):
        seen.append((rec.id, rec.deleted))
        if rec.id == "p1":  # behind the scan: p0, ahead: p8, p9 and a new one
            await put(svc, "Patient", "p0", gender="female")
            await put(svc, "Patient", "p8", gender="female")
            await delete(svc, "Patient", "p9")
            await put(svc, "Patient", "p10", gender="other")
    assert [id for id, _ in seen] == [f"p{n}" for n in range(11)]
    assert dict(seen)["p5"] and dict(seen)["p9"]


async def test_at_time_gives_the_versions_current_then_whatever_is_written_during_the_scan(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    for n in range(12):
        await put(svc, "Patient", f"p{n}", gender="male")
    await delete(svc, "Patient", "p11")  # deleted before T: reported as a deletion
    moment = now_instant()
    found: dict[str, tuple[int, bool]] = {}
    async for rec in at_time(storage, "Patient", moment):
        assert rec.id not in found  # each resource once
        found[rec.id] = (rec.version, rec.deleted)
        if len(found) == 2:  # writes while the scan goes on: before and after its place
            await put(svc, "Patient", "p0", gender="female")
            await put(svc, "Patient", "p9", gender="female")
            await delete(svc, "Patient", "p10")
            await delete(svc, "Patient", "p3")
            await put(svc, "Patient", "p3", gender="other")  # re-created after T
            await put(svc, "Patient", "late", gender="other")  # created after T
    assert found == {**{f"p{n}": (1, False) for n in range(11)}, "p11": (2, True)}


async def test_saved_state_keys_by_prefix_and_named_blob_stores(storage: Storage) -> None:
    await storage.save_state("bulk:job:b", b"2")
    await storage.save_state("bulk:job:a", b"1")
    await storage.save_state("bulk:jobx", b"3")
    await storage.save_state("other", b"4")
    assert await storage.state_keys("bulk:job:") == ["bulk:job:a", "bulk:job:b"]

    async def chunks() -> Any:
        yield b"line\n"

    ref = await storage.blobs("exports").put(chunks())
    assert await storage.blobs("exports").exists(ref.sha256)
    assert not await storage.blobs().exists(ref.sha256)  # Binary content is elsewhere


async def kickoff(svc: FhirService, path: str = "$export", **query: str) -> str:
    answer = await svc.handle(
        Request("GET", path, query=tuple(query.items()), headers=ASYNC, context=SYSTEM)
    )
    assert answer.status == 202, answer.body
    return answer.headers["Content-Location"].split("_jobId=")[1]


async def poll(svc: FhirService, job: str) -> Response:
    return await svc.handle(
        Request("GET", "$export-poll-status", query=(("_jobId", job),), context=SYSTEM)
    )


async def lines(bulk: BulkExport, manifest: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    job = await bulk.jobs.load(manifest["output"][0]["url"].split("_jobId=")[1].split("&")[0])
    assert job is not None
    for file in job.files:
        if file.kind == kind:
            data = b"".join([c async for c in bulk.files.read(file.sha256)])
            out.extend(orjson.loads(line) for line in data.splitlines())
    return out


async def exported(svc: FhirService, bulk: BulkExport, job: str) -> dict[str, Any]:
    await bulk.runner.tick()
    answer = await poll(svc, job)
    assert answer.status == 200, answer.body
    assert isinstance(answer.body, dict)
    return answer.body


async def test_a_job_exports_each_type_and_a_since_export_reports_deletions(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    bulk = install(svc, storage.blobs("exports"), Options(file_bytes=300, settle_seconds=0.01))
    for n in range(6):
        await put(svc, "Patient", f"p{n}", gender="male")
        await put(
            svc,
            "Observation",
            f"o{n}",
            status="final",
            code={"text": "x"},
            subject={"reference": f"Patient/p{n}"},
        )
    job = await kickoff(svc, _type="Patient,Observation")
    assert (await poll(svc, job)).status == 202
    manifest = await exported(svc, bulk, job)
    counts: dict[str, int] = {}
    for entry in manifest["output"]:
        counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
    assert counts == {"Patient": 6, "Observation": 6}
    assert len(manifest["output"]) > 2  # split at 300 bytes
    assert sorted(r["id"] for r in await lines(bulk, manifest, "output")) == sorted(
        [f"p{n}" for n in range(6)] + [f"o{n}" for n in range(6)]
    )
    since = manifest["transactionTime"]
    await put(svc, "Patient", "p0", gender="female")
    await delete(svc, "Patient", "p1")
    second = await exported(svc, bulk, await kickoff(svc, _type="Patient", _since=since))
    assert [r["id"] for r in await lines(bulk, second, "output")] == ["p0"]
    deleted = await lines(bulk, second, "deleted")
    assert [b["entry"][0]["request"] for b in deleted] == [
        {"method": "DELETE", "url": "Patient/p1"}
    ]
    cancelled = await svc.handle(
        Request("DELETE", "$export-poll-status", query=(("_jobId", job),), context=SYSTEM)
    )
    assert cancelled.status == 202
    with pytest.raises(NotFound):
        await poll(svc, job)


async def test_an_interrupted_job_resumes_and_a_crash_loop_fails_cleanly(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    bulk = install(svc, storage.blobs("exports"), Options(settle_seconds=0.01))
    for n in range(5):
        await put(svc, "Patient", f"p{n}", gender="male")
    job_id = await kickoff(svc, _type="Patient")
    job = await bulk.jobs.load(job_id)
    assert job is not None
    job.status, job.attempts = "running", 1  # a leader died while writing Patient
    await bulk.jobs.save(job)
    manifest = await exported(svc, bulk, job_id)
    assert [e["count"] for e in manifest["output"]] == [5]
    again = await bulk.jobs.load(await kickoff(svc, _type="Patient"))
    assert again is not None
    again.status, again.attempts = "running", MAX_ATTEMPTS
    await bulk.jobs.save(again)
    await bulk.runner.tick()
    failed = await poll(svc, again.id)
    assert failed.status == 500
    assert "interrupted" in str(failed.body)


async def test_a_named_transform_applies_and_finished_jobs_expire_with_their_files(
    storage: Storage,
) -> None:
    svc = FhirService(storage)
    bulk = install(
        svc, storage.blobs("exports"), Options(retention_seconds=0.3, settle_seconds=0.01)
    )

    def females_without_names(resource: dict[str, Any]) -> dict[str, Any] | None:
        if resource.get("gender") == "male":
            return None
        return {k: v for k, v in resource.items() if k != "name"}

    bulk.add_transform("test-profile", lambda job_id: females_without_names)
    for n in range(4):
        gender = "male" if n % 2 else "female"
        await put(svc, "Patient", f"p{n}", gender=gender, name=[{"family": f"F{n}"}])
    job = await kickoff(svc, _type="Patient", _deidentify="test-profile")
    manifest = await exported(svc, bulk, job)
    found = await lines(bulk, manifest, "output")
    assert sorted(r["id"] for r in found) == ["p0", "p2"]
    assert all("name" not in r for r in found)
    saved = await bulk.jobs.load(job)
    assert saved is not None and await bulk.files.exists(saved.files[0].sha256)
    await asyncio.sleep(0.4)
    with pytest.raises(NotFound):
        await poll(svc, job)
    await bulk.runner.tick()  # the leader's round removes the files and the job
    assert not await bulk.files.exists(saved.files[0].sha256)
    assert await bulk.jobs.ids() == []


async def peak_bytes(svc: FhirService, job: Job) -> int:
    """tracemalloc's peak while the whole type streams through the selection."""
    selection = Selection(svc, job, None)
    tracemalloc.start()
    try:
        async for _ in selection.resources("Patient", lambda rec: None):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_the_export_stream_holds_no_more_memory_for_more_resources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite (the stand-in for MongoDB keeps every document in memory anyway); batches
    of 10 (filters) and 4 (storage reads), so both sizes are many batches long."""
    monkeypatch.setattr(scan, "FILTER_BATCH", 10)
    storage = await make_sqlite(tmp_path)
    try:
        svc = FhirService(storage)
        div = f'<div xmlns="http://www.w3.org/1999/xhtml">{"x" * 3000}</div>'
        peaks = []
        written = 0
        for total in (40, 240):
            for n in range(written, total):
                await put(svc, "Patient", f"m{n}", text={"status": "generated", "div": div})
            written = total
            job = Job("j", "", "", now_instant(), ["Patient"], context_to_json(SYSTEM))
            peaks.append(await peak_bytes(svc, job))
    finally:
        await storage.close()
    assert peaks[1] - peaks[0] < 200 * 3000 / 4  # holding the 200 more would add 600 KB
