"""An acknowledged write survives kill -9 of the server."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from tests.e2e.helpers import JSON, patient, unique
from tests.support.server import ServerProcess


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    database = tmp_path / "crash.db"
    server = ServerProcess(database).start()
    ids = []
    try:
        with httpx.Client(base_url=server.base, timeout=30) as http:
            for _ in range(20):
                response = http.post(
                    "/Patient",
                    content=orjson.dumps(patient(unique())),
                    headers={"Content-Type": JSON},
                )
                assert response.status_code == 201
                ids.append(response.json()["id"])
    finally:
        server.kill()
    restarted = ServerProcess(database).start()
    try:
        with httpx.Client(base_url=restarted.base, timeout=30) as http:
            for id in ids:
                assert http.get(f"/Patient/{id}").status_code == 200
    finally:
        restarted.stop()
