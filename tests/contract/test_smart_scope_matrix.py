"""The scope matrix: every interaction × scope form × inside/outside the launch patient's
compartment, in process through `FhirService.handle` with the `SmartPolicy`, on every engine.

What each scope grants is written out here by hand (`Grant`), not derived from the
policy's own parser, and an oracle (`Oracle`) says from it what each call may do and see.
Every call's outcome is compared with the oracle: an "escape" is something the server
allowed or showed that the scopes do not grant; a "refusal" is something granted that the
server refused. The test reports both and expects none. Searches that try to reach the
other patient through `_include`, `_revinclude`, `:iterate`, chains, `_has`, `_filter`
and `$everything` are among the calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from adapters.hl7v2.operations import install as install_hl7v2
from fhir_server.auth.policy import SmartPolicy
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import FhirError
from fhir_server.interactions.everything import everything_operation
from fhir_server.interactions.reindex import reindex_operation
from fhir_server.interactions.request import Request, Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.base import Storage
from terminology.service import install as install_terminology

BASE = "http://test/fhir"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB, VITAL = "laboratory", "vital-signs"
ADT = (Path(__file__).parents[1] / "vectors" / "hl7v2" / "adt_a01" / "admit.hl7").read_bytes()
ME, OTHER = "p1", "p2"  # the launch patient, and another one


# -- the data: who each resource belongs to ------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    type: str
    id: str
    owners: frozenset[str]  # the patients whose compartment it is in (empty: shared data)
    category: str | None = None
    body: dict[str, Any] = field(default_factory=dict, compare=False)


def observation(
    id: str, subject: str, category: str, code: str = "1234-5", performer: str | None = None
) -> Fixture:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{subject}"},
    }
    owners = {subject}
    if performer:
        body["performer"] = [{"reference": f"Patient/{performer}"}]
        owners.add(performer)
    return Fixture("Observation", id, frozenset(owners), category, body)


FIXTURES = [
    Fixture(
        "Patient",
        ME,
        frozenset({ME}),
        body={
            "resourceType": "Patient",
            "id": ME,
            "name": [{"family": "One"}],
            "generalPractitioner": [{"reference": "Practitioner/dr1"}],
            "managingOrganization": {"reference": "Organization/org1"},
        },
    ),
    Fixture(
        "Patient",
        OTHER,
        frozenset({OTHER}),
        body={
            "resourceType": "Patient",
            "id": OTHER,
            "name": [{"family": "Two"}],
            "managingOrganization": {"reference": "Organization/org1"},
        },
    ),
    Fixture(
        "Practitioner",
        "dr1",
        frozenset(),
        body={"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "Doc"}]},
    ),
    Fixture(
        "Organization",
        "org1",
        frozenset(),
        body={"resourceType": "Organization", "id": "org1", "name": "Clinic"},
    ),
    observation("obs-me-lab", ME, LAB),
    observation("obs-me-vital", ME, VITAL, code="8867-4"),
    observation("obs-other-lab", OTHER, LAB, code="9999-9"),
    # in both compartments: its subject is the other patient, its performer the launch one
    observation("obs-both", OTHER, LAB, code="7777-7", performer=ME),
    Fixture(
        "Condition",
        "cond-me",
        frozenset({ME}),
        body={
            "resourceType": "Condition",
            "id": "cond-me",
            "subject": {"reference": f"Patient/{ME}"},
            "code": {"text": "asthma"},
        },
    ),
    Fixture(
        "Condition",
        "cond-other",
        frozenset({OTHER}),
        body={
            "resourceType": "Condition",
            "id": "cond-other",
            "subject": {"reference": f"Patient/{OTHER}"},
            "code": {"text": "gout"},
        },
    ),
    Fixture(
        "Binary",
        "bin-me",
        frozenset({ME}),
        body={
            "resourceType": "Binary",
            "id": "bin-me",
            "contentType": "text/plain",
            "securityContext": {"reference": f"Patient/{ME}"},
            "data": "aGVsbG8=",
        },
    ),
    Fixture(
        "Binary",
        "bin-other",
        frozenset({OTHER}),
        body={
            "resourceType": "Binary",
            "id": "bin-other",
            "contentType": "text/plain",
            "securityContext": {"reference": f"Patient/{OTHER}"},
            "data": "aGVsbG8=",
        },
    ),
]
BY_KEY = {(f.type, f.id): f for f in FIXTURES}
SEARCHED = ("Patient", "Observation", "Condition", "Practitioner")


# -- what each scope form grants, written out --------------------------------------------


@dataclass(frozen=True)
class Grant:
    level: str  # patient | user | system
    type: str  # a type or *
    letters: str
    category: str | None = None  # a granular scope's category


@dataclass(frozen=True)
class Case:
    scope: str
    grants: tuple[Grant, ...]
    patient: str | None = ME
    fhir_user: str | None = None

    def context(self) -> AccessContext:
        return AccessContext(
            subject="tester",
            scopes=frozenset(self.scope.split()),
            patient=self.patient,
            fhir_user=self.fhir_user,
            client_id="app",
            jti="j",
        )


G = Grant
CASES: dict[str, Case] = {
    "v1 patient read": Case(
        "launch/patient openid fhirUser patient/*.read", (G("patient", "*", "rs"),)
    ),
    "v1 patient wildcard": Case("patient/*.*", (G("patient", "*", "cruds"),)),
    "v1 typed write": Case(
        "patient/Observation.write patient/Observation.read",
        (G("patient", "Observation", "cud"), G("patient", "Observation", "rs")),
    ),
    "v2 rs one type": Case("patient/Observation.rs", (G("patient", "Observation", "rs"),)),
    "v2 r only": Case(
        "patient/Observation.r patient/Patient.r",
        (G("patient", "Observation", "r"), G("patient", "Patient", "r")),
    ),
    "v2 cud + rs": Case(
        "patient/Observation.cud patient/Observation.rs patient/Patient.rs",
        (
            G("patient", "Observation", "cud"),
            G("patient", "Observation", "rs"),
            G("patient", "Patient", "rs"),
        ),
    ),
    "v2 granular": Case(
        f"patient/Observation.rs?category={CATEGORY}|{LAB} patient/Patient.rs",
        (G("patient", "Observation", "rs", LAB), G("patient", "Patient", "rs")),
    ),
    "v2 granular write": Case(
        f"patient/Observation.cruds?category={CATEGORY}|{LAB}",
        (G("patient", "Observation", "cruds", LAB),),
    ),
    "v2 all letters": Case(
        "patient/*.cruds patient/Binary.r",
        (G("patient", "*", "cruds"), G("patient", "Binary", "r")),
    ),
    "patient scope without a patient": Case("patient/*.read", (), patient=None),
    "user practitioner": Case(
        "user/*.read", (G("user", "*", "rs"),), patient=None, fhir_user="Practitioner/dr1"
    ),
    "user practitioner write": Case(
        "user/Observation.cruds user/Patient.rs",
        (G("user", "Observation", "cruds"), G("user", "Patient", "rs")),
        patient=None,
        fhir_user="Practitioner/dr1",
    ),
    "user who is the patient": Case(
        "user/*.cruds", (G("user", "*", "cruds"),), patient=None, fhir_user=f"Patient/{ME}"
    ),
    "user without identity": Case("user/*.rs", (G("user", "*", "rs"),), patient=None),
    "system read": Case("system/*.rs", (G("system", "*", "rs"),), patient=None),
    "system wildcard": Case("system/*.*", (G("system", "*", "cruds"),), patient=None),
    "system typed": Case(
        "system/Observation.cruds", (G("system", "Observation", "cruds"),), patient=None
    ),
    "no clinical scope": Case("openid fhirUser launch/patient offline_access online_access", ()),
    "invalid scopes": Case("patient/Observation.sr patient/*.read?category=x Patient/*.*", ()),
}


class Oracle:
    """What one case's grants allow, from the grants and the fixtures' owners alone."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.grants = tuple(
            g for g in case.grants if g.level != "patient" or case.patient is not None
        )

    def may(self, letter: str, type: str | None) -> bool:
        return any(
            letter in g.letters and (type is None or g.type in ("*", type)) for g in self.grants
        )

    def covers(self, letters: str, type: str, owners: frozenset[str], category: str | None) -> bool:
        return any(
            set(letters) & set(g.letters)
            and g.type in ("*", type)
            and self._reaches(g, type, owners, letters)
            and (g.category is None or g.category == category)
            for g in self.grants
        )

    def _reaches(self, g: Grant, type: str, owners: frozenset[str], letters: str) -> bool:
        if g.level == "system":
            return True
        reach = self._patients(g)
        if reach is None:
            return True
        if not owners and type != "Binary":  # shared data: read by all, written by users
            return set(letters) <= set("rs") or g.level != "patient"
        return bool(owners & reach)

    def _patients(self, g: Grant) -> frozenset[str] | None:
        if g.level == "patient":
            return frozenset({self.case.patient or ""})
        user = self.case.fhir_user or ""
        if user.startswith("Patient/"):
            return frozenset({user.split("/")[1]})
        return None if user.startswith("Practitioner/") else frozenset()

    def sees(self, f: Fixture) -> bool:
        return self.covers("rs", f.type, f.owners, f.category)

    def searchable(self, f: Fixture) -> bool:
        """What a search may find: Binary is judged by its securityContext on reads only."""
        limited = any(
            g.level != "system" and self._patients(g) is not None
            for g in self.grants
            if g.type in ("*", "Binary")
        )
        return self.sees(f) and not (f.type == "Binary" and limited)


# -- running calls and recording what is wrong ------------------------------------------


@dataclass
class Report:
    escapes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    calls: int = 0

    def expect(self, allowed: bool, happened: bool, what: str) -> None:
        if happened and not allowed:
            self.escapes.append(what)
        elif allowed and not happened:
            self.refusals.append(what)


async def call(
    svc: FhirService,
    ctx: AccessContext,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]] = (),
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Response | FhirError:
    try:
        return await svc.handle(
            Request(method, path, tuple(query), headers or {}, body, context=ctx, base=BASE)
        )
    except FhirError as error:
        return error


def status(result: Response | FhirError) -> int:
    return result.status


def body_of(result: Response | FhirError) -> dict[str, Any]:
    assert isinstance(result, Response)
    body = result.body
    return orjson.loads(body) if isinstance(body, bytes) else body or {}


def keys_in(result: Response | FhirError) -> list[tuple[str, str]]:
    """(type, id) of every resource entry of a Bundle answer (none for an error)."""
    if not isinstance(result, Response):
        return []
    found = []
    for entry in body_of(result).get("entry", []):
        resource = entry.get("resource") or {}
        if resource.get("resourceType") not in (None, "OperationOutcome"):
            found.append((resource["resourceType"], resource["id"]))
    return found


@pytest.fixture
async def service(storage: Storage) -> FhirService:
    svc = FhirService(storage, base_url=BASE)
    svc.policy = SmartPolicy(svc.registry, svc.indexer)
    svc.add_operation(everything_operation())
    svc.add_operation(reindex_operation())
    await install_terminology(svc)
    install_hl7v2(svc)
    for f in FIXTURES:
        await svc.handle(Request("PUT", f"{f.type}/{f.id}", body=f.body, context=SYSTEM))
    return svc


# -- the interactions --------------------------------------------------------------------


async def reads(svc: FhirService, case: Case, oracle: Oracle, report: Report) -> None:
    """read, vread and instance history of every fixture, inside and outside."""
    ctx = case.context()
    for f in FIXTURES:
        allowed = oracle.may("r", f.type) and oracle.sees(f)
        for label, path in (
            ("read", f"{f.type}/{f.id}"),
            ("vread", f"{f.type}/{f.id}/_history/1"),
            ("history", f"{f.type}/{f.id}/_history"),
        ):
            result = await call(svc, ctx, "GET", path)
            shown = status(result) == 200 and (
                label != "history" or (f.type, f.id) in keys_in(result)
            )
            check_status(report, result, f"{label} {path}")
            report.expect(allowed, shown, f"{label} {path}")


def check_status(report: Report, result: Response | FhirError, what: str) -> None:
    report.calls += 1
    if status(result) not in (200, 201, 204, 403, 404, 410, 412):
        report.errors.append(f"{what}: {status(result)} {getattr(result, 'diagnostics', '')}")


async def searches(svc: FhirService, case: Case, oracle: Oracle, report: Report) -> None:
    """Type searches, system search, compartment searches: exactly what the scopes see."""
    ctx = case.context()
    for type in SEARCHED:
        expected = {(f.type, f.id) for f in FIXTURES if f.type == type and oracle.searchable(f)}
        await exact(svc, ctx, report, oracle.may("s", type), expected, "GET", type)
        await exact(svc, ctx, report, oracle.may("s", type), expected, "POST", f"{type}/_search")
    types = ("Observation", "Condition")
    expected = {(f.type, f.id) for f in FIXTURES if f.type in types and oracle.searchable(f)}
    await exact(
        svc,
        ctx,
        report,
        all(oracle.may("s", t) for t in types),
        expected,
        "GET",
        "",
        [("_type", ",".join(types))],
    )
    for patient in (ME, OTHER):
        expected = {
            (f.type, f.id)
            for f in FIXTURES
            if f.type == "Observation" and patient in f.owners and oracle.searchable(f)
        }
        await exact(
            svc,
            ctx,
            report,
            oracle.may("s", "Observation"),
            expected,
            "GET",
            f"Patient/{patient}/Observation",
        )
        await seen_only(svc, ctx, report, oracle, "GET", f"Patient/{patient}/*")


async def exact(
    svc: FhirService,
    ctx: AccessContext,
    report: Report,
    allowed: bool,
    expected: set[tuple[str, str]],
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
) -> None:
    result = await call(svc, ctx, method, path, query or [])
    what = f"{method} {path}?{query or ''}"
    check_status(report, result, what)
    report.expect(allowed, status(result) == 200, what)
    found = set(keys_in(result))
    for key in sorted(found - expected):
        report.escapes.append(f"{what} returned {key}")
    if allowed:
        for key in sorted(expected - found):
            report.refusals.append(f"{what} missed {key}")


async def seen_only(
    svc: FhirService,
    ctx: AccessContext,
    report: Report,
    oracle: Oracle,
    method: str,
    path: str,
    query: list[tuple[str, str]] | None = None,
    body: Any = None,
) -> set[tuple[str, str]]:
    """A call whose every returned resource must be one the scopes let the caller see."""
    result = await call(svc, ctx, method, path, query or [], body)
    what = f"{method} {path}?{query or ''}"
    check_status(report, result, what)
    found = set(keys_in(result))
    for key in sorted(found):
        fixture = BY_KEY.get(key)
        if fixture is None or not oracle.sees(fixture):
            report.escapes.append(f"{what} returned {key}")
    return found


async def reaching_out(svc: FhirService, case: Case, oracle: Oracle, report: Report) -> None:
    """Searches that try to reach the other patient by following references."""
    ctx = case.context()
    tries: list[tuple[str, list[tuple[str, str]]]] = [
        ("Observation", [("_include", "Observation:subject")]),
        ("Observation", [("_include", "Observation:patient"), ("_include", "Observation:*")]),
        (
            "Observation",
            [
                ("_include", "Observation:subject"),
                ("_include:iterate", "Patient:general-practitioner"),
            ],
        ),
        ("Patient", [("_revinclude", "Observation:subject")]),
        (
            "Patient",
            [("_revinclude", "Observation:patient"), ("_revinclude:iterate", "Condition:subject")],
        ),
        ("Patient", [("_id", OTHER)]),
        (
            "Condition",
            [("_include", "Condition:subject"), ("_revinclude:iterate", "Observation:subject")],
        ),
        ("", [("_type", "Patient,Observation"), ("_include", "Observation:subject")]),
        ("Observation", [("_filter", f"subject eq Patient/{OTHER}")]),
    ]
    for path, query in tries:
        await seen_only(svc, ctx, report, oracle, "GET", path, query)
    await side_channels(svc, ctx, oracle, report)
    for patient in (ME, OTHER):
        found = await seen_only(svc, ctx, report, oracle, "GET", f"Patient/{patient}/$everything")
        expected = {
            (f.type, f.id)
            for f in FIXTURES
            if f.type == "Observation" and patient in f.owners and oracle.sees(f)
        }
        focal = BY_KEY[("Patient", patient)]
        if oracle.may("r", "Patient") and oracle.sees(focal) and not expected <= found:
            report.refusals.append(f"$everything of {patient} missed {expected - found}")
    await seen_only(svc, ctx, report, oracle, "GET", "Patient/$everything")
    for path in ("_history", "Observation/_history", "Patient/_history"):
        await seen_only(svc, ctx, report, oracle, "GET", path)


async def side_channels(
    svc: FhirService, ctx: AccessContext, oracle: Oracle, report: Report
) -> None:
    """Criteria that would only match through a resource the caller may not see: a chain
    through the other patient, `_has` through an Observation out of the scopes, a
    `_filter` chain. Each must match nothing the caller could not have found anyway."""
    other, mine_vital = BY_KEY[("Patient", OTHER)], BY_KEY[("Observation", "obs-me-vital")]
    probes: list[tuple[str, list[tuple[str, str]], bool, set[tuple[str, str]]]] = [
        # obs-both is the caller's (performer) but its subject, the other patient, may not be
        (
            "Observation",
            [("subject:Patient.family", "Two")],
            oracle.sees(other),
            {("Observation", "obs-both"), ("Observation", "obs-other-lab")},
        ),
        (
            "Observation",
            [("subject.name", "Two")],
            oracle.sees(other),
            {("Observation", "obs-both"), ("Observation", "obs-other-lab")},
        ),
        (
            "Observation",
            [("_filter", "subject.family eq Two")],
            oracle.sees(other),
            {("Observation", "obs-both"), ("Observation", "obs-other-lab")},
        ),
        # the launch patient has a vital-signs Observation a granular lab scope hides
        (
            "Patient",
            [("_has:Observation:subject:code", "8867-4")],
            oracle.sees(mine_vital),
            {("Patient", ME)},
        ),
        (
            "Patient",
            [("_has:Observation:subject:category", VITAL)],
            oracle.sees(mine_vital),
            {("Patient", ME)},
        ),
        (
            "Patient",
            [("_has:Observation:patient:code", "9999-9")],
            oracle.sees(BY_KEY[("Observation", "obs-other-lab")]),
            {("Patient", OTHER)},
        ),
    ]
    for path, query, reachable, through in probes:
        result = await call(svc, ctx, "GET", path, query)
        check_status(report, result, f"GET {path}?{query}")
        found = set(keys_in(result))
        if not reachable and found & through:
            report.escapes.append(
                f"GET {path}?{query} matched {found & through} through a resource out of the scopes"
            )


async def writes(
    svc: FhirService, case: Case, oracle: Oracle, report: Report, counter: Callable[[], str]
) -> None:
    """create, update, patch, delete (plain and conditional), in and out of the compartment,
    and writes that would move a resource out of it or take another patient's over."""
    ctx = case.context()
    for subject, category in ((ME, LAB), (ME, VITAL), (OTHER, LAB)):
        new = observation(f"new{counter()}", subject, category)
        body = {k: v for k, v in new.body.items() if k != "id"}
        allowed = oracle.may("c", "Observation") and oracle.covers(
            "c", "Observation", new.owners, category
        )
        result = await call(svc, ctx, "POST", "Observation", body=body)
        check_status(report, result, f"create for {subject} {category}")
        report.expect(
            allowed, status(result) == 201, f"create Observation for {subject} ({category})"
        )
    moves = [(ME, ME), (OTHER, OTHER), (ME, OTHER), (OTHER, ME)]
    for (before, after), how in itertools.product(moves, ("PUT", "PATCH", "PUT?")):
        await one_update(svc, ctx, oracle, report, counter(), before, after, how)
    for owner, how in itertools.product((ME, OTHER), ("DELETE", "DELETE?")):
        await one_delete(svc, ctx, oracle, report, counter(), owner, how)
    await conditional_create(svc, ctx, oracle, report, counter())
    await bundles(svc, ctx, oracle, report, counter)


async def one_update(
    svc: FhirService,
    ctx: AccessContext,
    oracle: Oracle,
    report: Report,
    n: str,
    before: str,
    after: str,
    how: str,
) -> None:
    old = observation(f"upd{n}", before, LAB)
    await svc.handle(Request("PUT", f"Observation/{old.id}", body=old.body, context=SYSTEM))
    new = observation(old.id, after, LAB)
    if how == "PATCH":
        result = await call(
            svc,
            ctx,
            "PATCH",
            f"Observation/{old.id}",
            body=[{"op": "replace", "path": "/subject/reference", "value": f"Patient/{after}"}],
        )
    elif how == "PUT?":
        result = await call(svc, ctx, "PUT", "Observation", [("_id", old.id)], body=new.body)
    else:
        result = await call(svc, ctx, "PUT", f"Observation/{old.id}", body=new.body)
    what = f"{how} Observation/{old.id} from {before} to {after}"
    check_status(report, result, what)
    allowed = (
        oracle.may("u", "Observation")
        and oracle.covers("u", "Observation", old.owners, LAB)
        and oracle.covers("u", "Observation", new.owners, LAB)
        and (how != "PUT?" or oracle.sees(old))
    )  # the criteria search sees it
    stored = await svc.handle(Request("GET", f"Observation/{old.id}", context=SYSTEM))
    changed = body_of(stored)["subject"]["reference"] == f"Patient/{after}" and before != after
    updated = status(result) == 200 and (changed or before == after)
    report.expect(allowed, updated, what)
    if changed and not allowed:
        report.escapes.append(f"{what}: the stored resource changed")


async def one_delete(
    svc: FhirService,
    ctx: AccessContext,
    oracle: Oracle,
    report: Report,
    n: str,
    owner: str,
    how: str,
) -> None:
    old = observation(f"del{n}", owner, LAB)
    await svc.handle(Request("PUT", f"Observation/{old.id}", body=old.body, context=SYSTEM))
    if how == "DELETE?":
        result = await call(svc, ctx, "DELETE", "Observation", [("_id", old.id)])
    else:
        result = await call(svc, ctx, "DELETE", f"Observation/{old.id}")
    what = f"{how} Observation/{old.id} of {owner}"
    check_status(report, result, what)
    allowed = (
        oracle.may("d", "Observation")
        and oracle.sees(old)
        and oracle.covers("d", "Observation", old.owners, LAB)
    )
    after = await call(svc, SYSTEM, "GET", f"Observation/{old.id}")
    report.expect(allowed, status(after) == 410, what)


async def conditional_create(
    svc: FhirService, ctx: AccessContext, oracle: Oracle, report: Report, n: str
) -> None:
    """If-None-Exist matching only the other patient's Observation must not hand it back."""
    other = BY_KEY[("Observation", "obs-other-lab")]
    mine = observation(f"cc{n}", ME, LAB)
    body = {k: v for k, v in mine.body.items() if k != "id"}
    result = await call(
        svc,
        ctx,
        "POST",
        "Observation",
        body=body,
        headers={
            "if-none-exist": "code=http://loinc.org|9999-9",
            "prefer": "return=representation",
        },
    )
    check_status(report, result, "conditional create")
    if status(result) == 200 and not oracle.sees(other):
        report.escapes.append("conditional create returned the other patient's Observation")


async def bundles(
    svc: FhirService, ctx: AccessContext, oracle: Oracle, report: Report, counter: Callable[[], str]
) -> None:
    """A batch's entries are judged one by one; a transaction fails as a whole."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Observation/{id}"}}
            for id in ("obs-me-lab", "obs-other-lab", "obs-both")
        ],
    }
    result = await call(svc, ctx, "POST", "", body=batch)
    check_status(report, result, "batch")
    entries = body_of(result).get("entry", []) if isinstance(result, Response) else []
    for entry, id in zip(entries, ("obs-me-lab", "obs-other-lab", "obs-both"), strict=True):
        fixture = BY_KEY[("Observation", id)]
        allowed = oracle.may("r", "Observation") and oracle.sees(fixture)
        report.expect(
            allowed, entry["response"]["status"].startswith("200"), f"batch GET Observation/{id}"
        )
    for owner in (ME, OTHER):
        new = observation(f"tx{counter()}", owner, LAB)
        transaction = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": new.body, "request": {"method": "PUT", "url": f"Observation/{new.id}"}}
            ],
        }
        result = await call(svc, ctx, "POST", "", body=transaction)
        check_status(report, result, f"transaction for {owner}")
        allowed = oracle.may("u", "Observation") and oracle.covers(
            "u", "Observation", new.owners, LAB
        )
        report.expect(allowed, status(result) == 200, f"transaction PUT for {owner}")


async def operations(svc: FhirService, case: Case, oracle: Oracle, report: Report) -> None:
    """Terminology and $validate need no scope on data; $reindex and $convert-hl7v2 need
    every system right."""
    ctx = case.context()
    admin = any(
        g.level == "system" and g.type == "*" and g.letters == "cruds" for g in oracle.grants
    )
    free = [
        (
            "GET",
            "CodeSystem/$lookup",
            [("system", "http://hl7.org/fhir/administrative-gender"), ("code", "male")],
            None,
        ),
        (
            "GET",
            "ValueSet/$expand",
            [("url", "http://hl7.org/fhir/ValueSet/administrative-gender")],
            None,
        ),
        ("POST", "Observation/$validate", [], BY_KEY[("Observation", "obs-other-lab")].body),
    ]
    for method, path, query, body in free:
        result = await call(svc, ctx, method, path, query, body)
        check_status(report, result, path)
        report.expect(True, status(result) == 200, f"{method} {path}")
    message = {
        "resourceType": "Parameters",
        "parameter": [{"name": "message", "valueString": ADT.decode()}],
    }
    for path, body in (
        (
            "$reindex",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "type", "valueString": "Organization"}],
            },
        ),
        ("$convert-hl7v2", message),
    ):
        result = await call(svc, ctx, "POST", path, body=body)
        check_status(report, result, path)
        report.expect(admin, status(result) == 200, f"POST {path}")


@pytest.mark.parametrize("name", list(CASES))
async def test_scope_matrix(service: FhirService, name: str) -> None:
    case = CASES[name]
    oracle, report = Oracle(case), Report()
    numbers = itertools.count()

    def counter() -> str:
        return f"{list(CASES).index(name)}x{next(numbers)}"

    await reads(service, case, oracle, report)
    await searches(service, case, oracle, report)
    await reaching_out(service, case, oracle, report)
    await writes(service, case, oracle, report, counter)
    await operations(service, case, oracle, report)
    summary = (
        f"{name}: {report.calls} calls, {len(report.escapes)} escapes, "
        f"{len(report.refusals)} wrong refusals, {len(report.errors)} errors"
    )
    assert report.escapes == [], summary
    assert report.refusals == [], summary
    assert report.errors == [], summary


async def test_the_matrix_sees_escapes_and_refusals(service: FhirService) -> None:
    """The same calls under a policy that lets everything through: the matrix must report
    escapes for a patient scope, and refusals for a deny-all."""
    from fhir_server.context import AllowAll, DenyAll

    case = CASES["v2 granular"]
    for policy, attribute in ((AllowAll(), "escapes"), (DenyAll(), "refusals")):
        service.policy = policy
        oracle, report = Oracle(case), Report()
        await reads(service, case, oracle, report)
        await searches(service, case, oracle, report)
        await reaching_out(service, case, oracle, report)
        assert getattr(report, attribute), f"{type(policy).__name__}: no {attribute} seen"
    service.policy = AllowAll()
    oracle, report = Oracle(case), Report()
    await side_channels(service, case.context(), oracle, report)
    assert len(report.escapes) == 6  # every side channel is open without the policy


async def test_history_totals_only_for_callers_who_see_everything(service: FhirService) -> None:
    """The storage counts every version: a restricted caller is not told that count."""
    restricted = CASES["v1 patient read"].context()
    for path in ("Observation/_history", "_history"):
        page = body_of(await call(service, restricted, "GET", path))
        assert "total" not in page
        assert {
            (e["resource"]["resourceType"], e["resource"]["id"])
            for e in page["entry"]
            if "resource" in e
        } <= {(f.type, f.id) for f in FIXTURES if f.owners & {ME} or not f.owners}
    full = body_of(
        await call(service, CASES["system read"].context(), "GET", "Observation/_history")
    )
    assert full["total"] == sum(f.type == "Observation" for f in FIXTURES)
