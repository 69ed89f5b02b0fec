"""`serve --workers 2` over real HTTP: every guarantee of one process holds across two.

The requests of each race go out on separate connections, which the two workers accept
between them (each test checks that both workers spent CPU on it): conditional create
makes one resource, `If-Match` has one winner, transactions are all-or-nothing, history
has neither gaps nor duplicates, a paging link made by one worker works on the other, and
a custom SearchParameter made through one worker is in effect in both within a second.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.helpers import JSON, observation, patient, unique
from tests.support.server import ServerProcess
from tests.support.workers import cpu_ticks, require_proc, wait_for_workers

MRN = "http://hospital.example/mrn"
EYE = "http://example.org/fhir/StructureDefinition/eye-colour"
Requests = list[tuple[str, str, bytes, dict[str, str]]]


class TwoWorkers:
    def __init__(self, server: ServerProcess, pids: list[int]) -> None:
        self.server = server
        self.pids = pids
        self.busy: list[int] = []

    def ticks(self) -> list[int]:
        return [cpu_ticks(pid) for pid in self.pids]

    def race(self, requests: Requests) -> list[httpx.Response]:
        """Send `requests` at once, each on its own connection (`busy`: the CPU ticks each
        worker spent meanwhile)."""
        before = self.ticks()
        responses = asyncio.run(_race(self.server.base, requests))
        self.busy = [after - start for after, start in zip(self.ticks(), before, strict=True)]
        return responses

    def until_both_served(self, round: Callable[[], None], tries: int = 10) -> None:
        """Run `round` (a race and its checks) until both workers served in one race: the
        kernel hands connections to whichever worker accepts first, and an idle machine
        may let one take them all."""
        for _ in range(tries):
            round()
            if all(self.busy):
                return
        raise AssertionError(f"one worker served every race: CPU ticks {self.busy}")


async def _race(base: str, requests: Requests) -> list[httpx.Response]:
    async def one(method: str, url: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:  # a new connection
            return await http.request(method, url, content=content, headers=headers)

    return await asyncio.gather(*(one(*request) for request in requests))


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoWorkers]:
    require_proc()
    database = tmp_path_factory.mktemp("workers") / "fhir.db"
    server = ServerProcess(database, FHIR_WORKERS="2").start(timeout=180)
    try:
        assert server.process is not None
        pids = wait_for_workers(server.process.pid, 2)
        yield TwoWorkers(server, pids)
    finally:
        server.stop()  # SIGTERM to the supervisor stops every worker
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in pids):
        assert time.monotonic() < deadline, "a worker outlived SIGTERM to the server"
        time.sleep(0.1)


@pytest.fixture
def client(workers: TwoWorkers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=workers.server.base, timeout=60) as http:
        yield http


def test_conditional_create_makes_one_resource_across_workers(
    workers: TwoWorkers, client: httpx.Client
) -> None:
    def round_() -> None:
        mrn = unique()
        headers = {"Content-Type": JSON, "If-None-Exist": f"identifier={MRN}|{mrn}"}
        responses = workers.race([("POST", "/Patient", orjson.dumps(patient(mrn)), headers)] * 16)
        statuses = sorted(r.status_code for r in responses)
        assert statuses.count(201) == 1 and statuses.count(200) == 15, statuses
        assert len({r.json()["id"] for r in responses}) == 1
        assert client.get("/Patient", params={"identifier": f"{MRN}|{mrn}"}).json()["total"] == 1

    workers.until_both_served(round_)


def test_if_match_has_one_winner_across_workers(workers: TwoWorkers, client: httpx.Client) -> None:
    def round_() -> None:
        created = client.post(
            "/Patient", content=orjson.dumps(patient(unique())), headers={"Content-Type": JSON}
        ).json()
        url = f"/Patient/{created['id']}"
        requests: Requests = [
            (
                "PUT",
                url,
                orjson.dumps(created | {"birthDate": f"19{n:02d}-01-01"}),
                {"Content-Type": JSON, "If-Match": 'W/"1"'},
            )
            for n in range(16)
        ]
        statuses = sorted(r.status_code for r in workers.race(requests))
        assert statuses.count(200) == 1 and statuses.count(412) == 15, statuses
        assert client.get(url).json()["meta"]["versionId"] == "2"

    workers.until_both_served(round_)


def _transaction(mrn: str, fail: bool) -> bytes:
    """A patient and an observation; with `fail`, a third entry whose If-Match cannot hold."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": "urn:uuid:p",
            "resource": patient(mrn),
            "request": {"method": "POST", "url": "Patient"},
        },
        {
            "resource": observation("urn:uuid:p"),
            "request": {"method": "POST", "url": "Observation"},
        },
    ]
    if fail:
        entries.append(
            {
                "resource": patient(unique(), id="never-there"),
                "request": {"method": "PUT", "url": "Patient/never-there", "ifMatch": 'W/"7"'},
            }
        )
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def test_transactions_are_all_or_nothing_across_workers(
    workers: TwoWorkers, client: httpx.Client
) -> None:
    def round_() -> None:
        mrns = [unique() for _ in range(16)]
        headers = {"Content-Type": JSON}
        requests: Requests = [
            ("POST", "", _transaction(mrn, fail=n % 2 == 1), headers) for n, mrn in enumerate(mrns)
        ]
        responses = workers.race(requests)
        for n, (mrn, response) in enumerate(zip(mrns, responses, strict=True)):
            found = client.get("/Patient", params={"identifier": f"{MRN}|{mrn}"}).json()
            if n % 2:
                assert response.status_code in (409, 412), response.text
                assert found["total"] == 0
            else:
                assert response.status_code == 200, response.text
                assert found["total"] == 1
                subject = f"Patient/{found['entry'][0]['resource']['id']}"
                observations = client.get("/Observation", params={"subject": subject}).json()
                assert observations["total"] == 1

    workers.until_both_served(round_)


def test_history_has_no_gaps_or_duplicates_across_workers(
    workers: TwoWorkers, client: httpx.Client
) -> None:
    def round_() -> None:
        created = client.post(
            "/Patient", content=orjson.dumps(patient(unique())), headers={"Content-Type": JSON}
        ).json()
        url = f"/Patient/{created['id']}"
        requests: Requests = [
            (
                "PUT",
                url,
                orjson.dumps(created | {"birthDate": f"19{n:02d}-02-03"}),
                {"Content-Type": JSON},
            )
            for n in range(20)
        ]
        statuses = [r.status_code for r in workers.race(requests)]
        assert statuses.count(200) == 20, statuses  # a lost race is retried, never refused
        history = client.get(f"{url}/_history", params={"_count": 100}).json()
        versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"])
        assert versions == list(range(1, 22))
        assert history["total"] == 21

    workers.until_both_served(round_)


def test_paging_links_made_by_one_worker_work_on_the_other(
    workers: TwoWorkers, client: httpx.Client
) -> None:
    family = f"Paged{unique()}"
    for _ in range(24):
        client.post(
            "/Patient",
            content=orjson.dumps(patient(unique(), family=family)),
            headers={"Content-Type": JSON},
        )
    pages: list[tuple[str, list[str]]] = []  # (url, ids) as one connection saw them
    url: str | None = f"/Patient?family={family}&_count=5&_sort=_id"
    while url is not None:
        page = client.get(url).json()
        pages.append((url, [e["resource"]["id"] for e in page.get("entry", [])]))
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    seen = [i for _, ids in pages for i in ids]
    assert len(seen) == 24 == len(set(seen)) and seen == sorted(seen)

    def round_() -> None:  # every page again, four times each, all at once
        again = workers.race([("GET", url, b"", {}) for url, _ in pages for _ in range(4)])
        for n, response in enumerate(again):
            assert response.status_code == 200, response.text
            ids = [e["resource"]["id"] for e in response.json().get("entry", [])]
            assert ids == pages[n // 4][1]

    workers.until_both_served(round_)


def eye_colour() -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": "eye-colour-workers",
        "url": "http://example.org/fhir/SearchParameter/eye-colour-workers",
        "name": "EyeColourWorkers",
        "status": "active",
        "description": "Eye colour from the extension",
        "code": "eye-colour",
        "base": ["Patient"],
        "type": "token",
        "expression": f"Patient.extension.where(url = '{EYE}').value",
    }


def test_a_search_parameter_is_in_effect_in_every_worker_within_a_second(
    workers: TwoWorkers, client: httpx.Client
) -> None:
    strict = {"Prefer": "handling=strict"}
    assert client.get("/Patient", params={"eye-colour": "blue"}, headers=strict).status_code == 400
    created = client.put(
        "/SearchParameter/eye-colour-workers",
        content=orjson.dumps(eye_colour()),
        headers={"Content-Type": JSON},
    )
    assert created.status_code == 201, created.text
    time.sleep(1.0)
    requests: Requests = [("GET", "/Patient?eye-colour=blue", b"", strict)] * 16

    def round_() -> None:
        responses = workers.race(requests)
        assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]

    workers.until_both_served(round_, tries=20)
