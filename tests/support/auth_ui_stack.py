"""The sign-in pages on a real HTTP server for tests: the app (SQLite) under uvicorn in a
thread, the fake authorize step plugged in, users of every role, and a few patients,
encounters and organizations to pick from.

Users (password `PASSWORDS[name]`):
  doc      clinician   Practitioner/pr1 (works for Organization/org1)
  nurse    nurse       Practitioner/pr1
  desk     front-desk  Practitioner/pr2
  pat      patient     Patient/p1
  mum      patient     RelatedPerson/rp1 (related to Patient/p2)
  admin    admin       (no FHIR user)
  locked   clinician   Practitioner/pr1 (for throttling tests)
Patients p1 and p2 belong to org1, p3 to org2; p1 has encounters e1 and e2.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from fhir_server.api.app import create_app
from fhir_server.auth.users import auth_database_path, new_user
from fhir_server.auth.users_sqlite import SQLiteUserStore
from fhir_server.settings import Settings
from tests.support.fake_auth_server import FakeSmartAuthServer
from tests.support.server import free_port
from tests.support.threaded_app import ThreadedApp

USERS = {
    "doc": ("clinician", "Practitioner/pr1"),
    "nurse": ("nurse", "Practitioner/pr1"),
    "desk": ("front-desk", "Practitioner/pr2"),
    "pat": ("patient", "Patient/p1"),
    "mum": ("patient", "RelatedPerson/rp1"),
    "admin": ("admin", None),
    "locked": ("clinician", "Practitioner/pr1"),
}
PASSWORDS = {name: f"{name}-secret-pw" for name in USERS}
APP_CALLBACK = "http://app.test/callback"
RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "North Clinic"},
    {"resourceType": "Organization", "id": "org2", "name": "South Clinic"},
    {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "House"}]},
    {"resourceType": "Practitioner", "id": "pr2", "name": [{"family": "Desk"}]},
    {
        "resourceType": "PractitionerRole",
        "id": "prr1",
        "practitioner": {"reference": "Practitioner/pr1"},
        "organization": {"reference": "Organization/org1"},
    },
    {
        "resourceType": "Patient",
        "id": "p1",
        "name": [{"given": ["Alice"], "family": "Able"}],
        "birthDate": "1970-01-01",
        "gender": "female",
        "managingOrganization": {"reference": "Organization/org1"},
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "name": [{"given": ["Bob"], "family": "Baker"}],
        "birthDate": "2015-05-05",
        "gender": "male",
        "managingOrganization": {"reference": "Organization/org1"},
    },
    {
        "resourceType": "Patient",
        "id": "p3",
        "name": [{"given": ["Carol"], "family": "Cole"}],
        "managingOrganization": {"reference": "Organization/org2"},
    },
    {
        "resourceType": "RelatedPerson",
        "id": "rp1",
        "patient": {"reference": "Patient/p2"},
        "name": [{"given": ["Mary"], "family": "Baker"}],
    },
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory",
        },
        "type": [{"text": "Check-up"}],
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2024-03-01T09:00:00Z"},
    },
    {
        "resourceType": "Encounter",
        "id": "e2",
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "type": [{"text": "Admission"}],
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2025-06-01T09:00:00Z"},
    },
]


class AuthUiStack:
    """The app with the fake authorize step, on a free port; `start()` seeds it."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        port = free_port()
        self.origin = f"http://127.0.0.1:{port}"
        self.base = self.origin + "/fhir"
        # The pages are under test here, with the fake authorize step: the FHIR API they
        # seed and read runs without token checks (the full stack has its own tests).
        settings.setdefault("auth", "off")
        self.settings = Settings(database=str(tmp / "fhir.db"), base_url=self.base, **settings)
        self.fake = FakeSmartAuthServer(aud=self.base)
        self.fake.register("app1", "Growth Chart", APP_CALLBACK)
        self.server = ThreadedApp(create_app(self.settings, auth_server=self.fake), port)

    def start(self) -> AuthUiStack:
        # In a thread of its own: the caller's thread may run an event loop (Playwright's).
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self._add_users()).result()
        self.server.start()
        with httpx.Client(base_url=self.base, timeout=60) as http:
            for resource in RESOURCES:
                path = f"{resource['resourceType']}/{resource['id']}"
                http.put(path, json=resource).raise_for_status()
        return self

    async def _add_users(self) -> None:
        store = SQLiteUserStore(auth_database_path(self.settings))
        await store.open()
        try:
            for name, (role, fhir_user) in USERS.items():
                await store.add_user(new_user(name, PASSWORDS[name], role, fhir_user))
        finally:
            await store.close()

    def stop(self) -> None:
        self.server.stop()

    def authorize_params(self, scope: str, **extra: str) -> dict[str, str]:
        """A valid authorize request of client app1."""
        return {
            "response_type": "code",
            "client_id": "app1",
            "redirect_uri": APP_CALLBACK,
            "scope": scope,
            "state": "st-123",
            "aud": self.base,
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256",
            **extra,
        }
