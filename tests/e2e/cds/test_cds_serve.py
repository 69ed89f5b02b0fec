"""`fhir-server serve` offers the CDS Hooks endpoints: client JWTs required by default,
and not with FHIR_CDS_AUTH=off (which it warns about)."""

from __future__ import annotations

import httpx

from tests.support.server import ServerProcess


def test_serve_requires_a_client_jwt_by_default(tmp_path) -> None:
    server = ServerProcess(tmp_path / "fhir.db").start()
    try:
        answer = httpx.get(server.base.removesuffix("/fhir") + "/cds-services")
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
    finally:
        server.stop()


def test_serve_with_cds_auth_off_lists_the_services_and_warns(tmp_path) -> None:
    server = ServerProcess(tmp_path / "fhir.db", FHIR_CDS_AUTH="off").start()
    try:
        answer = httpx.get(server.base.removesuffix("/fhir") + "/cds-services")
        assert answer.status_code == 200
        assert isinstance(answer.json()["services"], list)
    finally:
        server.stop()
    assert "CDS Hooks client authentication is OFF" in server.log.read_text()
