"""Consent provisions x actors x data classes, in process through `FhirService.handle`
with the `PrivacyPolicy` (over `AllowAll`, so that only consents decide), on every engine.

Each provision is written as a Consent of patient A; an oracle written out by hand says
which of A's resources each actor may receive under it. Every actor's reads, searches,
`_revinclude`, chain, `_has` and exports (`FhirService.export`) are compared with the
oracle, and search Bundles carry SUBSETTED exactly when something matching was withheld.
Patient B has no consent and is always visible.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from fhir_server.bulk import BulkExport
from fhir_server.bulk import Options as BulkOptions
from fhir_server.bulk import install as install_bulk
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import FhirError
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.privacy import install
from fhir_server.storage.base import Storage

LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

ORG1 = AccessContext(
    subject="doc1",
    scopes=frozenset({"user/*.rs"}),
    fhir_user="Practitioner/doc1",
    role="clinician",
    user_organizations=frozenset({"Organization/org1"}),
)
ORG2 = AccessContext(
    subject="doc2",
    scopes=frozenset({"user/*.rs"}),
    fhir_user="Practitioner/doc2",
    role="clinician",
    user_organizations=frozenset({"Organization/org2"}),
)
RESEARCH = AccessContext(
    subject="analyst",
    scopes=frozenset({"user/*.rs"}),
    fhir_user="Practitioner/res1",
    role="clinician",
    purposes=frozenset({"HRESCH"}),
)
ACTORS = {"org1": ORG1, "org2": ORG2, "research": RESEARCH}

# A's data, by id: (type, what the oracle looks at)
DATA: dict[str, tuple[str, dict[str, Any]]] = {
    "a": ("Patient", {}),
    "a-glucose": ("Observation", {"code": "1234-5"}),
    "a-weight": ("Observation", {"code": "9999-9"}),
    "a-psych": ("Observation", {"code": "9999-9", "label": "PSY"}),
    "a-cond": ("Condition", {}),
}


def resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for patient in ("a", "b"):
        out.append(
            {"resourceType": "Patient", "id": patient, "name": [{"family": f"Fam{patient}"}]}
        )
        for suffix, code, label in (("glucose", "1234-5", None), ("weight", "9999-9", None)):
            out.append(_observation(f"{patient}-{suffix}", patient, code, label))
        out.append(_observation(f"{patient}-psych", patient, "9999-9", "PSY"))
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{patient}-cond",
                "subject": {"reference": f"Patient/{patient}"},
                "code": {"text": "asthma"},
            }
        )
    return out


def _observation(id: str, patient: str, code: str, label: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if label:
        body["meta"] = {"security": [{"system": ACT, "code": label}]}
    return body


def consent(root: str, *nested: dict[str, Any], status: str = "active") -> dict[str, Any]:
    provision: dict[str, Any] = {"type": root}
    if nested:
        provision["provision"] = list(nested)
    return {
        "resourceType": "Consent",
        "id": "c1",
        "status": status,
        "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/a"},
        "provision": provision,
    }


def actor(ref: str) -> list[dict[str, Any]]:
    role = {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}
        ]
    }
    return [{"role": role, "reference": {"reference": ref}}]


ACCESS = [
    {
        "coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}
        ]
    }
]
RESEARCH_PURPOSE = [
    {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}
]

Denied = Callable[[str, str, dict[str, Any]], bool]  # (actor, type, facts) -> withheld


@dataclass(frozen=True)
class Case:
    name: str
    consent: dict[str, Any]
    denied: Denied


CASES = [
    Case(
        "opt-out of org2",
        consent("permit", {"type": "deny", "actor": actor("Organization/org2"), "action": ACCESS}),
        lambda who, t, f: who == "org2",
    ),
    Case(
        "opt-out of research",
        consent("permit", {"type": "deny", "purpose": RESEARCH_PURPOSE}),
        lambda who, t, f: who == "research",
    ),
    Case(
        "deny all but org1",
        consent("deny", {"type": "permit", "actor": actor("Organization/org1")}),
        lambda who, t, f: who != "org1",
    ),
    Case(
        "org2 may not see Conditions",
        consent(
            "permit",
            {
                "type": "deny",
                "actor": actor("Organization/org2"),
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}],
            },
        ),
        lambda who, t, f: who == "org2" and t == "Condition",
    ),
    Case(
        "org2 may not see glucose",
        consent(
            "permit",
            {
                "type": "deny",
                "actor": actor("Organization/org2"),
                "code": [{"coding": [{"system": LOINC, "code": "1234-5"}]}],
            },
        ),
        lambda who, t, f: who == "org2" and f.get("code") == "1234-5",
    ),
    Case(
        "nobody sees psychiatry but org1",
        consent(
            "permit",
            {
                "type": "deny",
                "securityLabel": [{"system": ACT, "code": "PSY"}],
                "provision": [{"type": "permit", "actor": actor("Organization/org1")}],
            },
        ),
        lambda who, t, f: f.get("label") == "PSY" and who != "org1",
    ),
    Case(
        "an expired opt-out",
        consent(
            "permit",
            {"type": "deny", "actor": actor("Organization/org2"), "period": {"end": "2001-01-01"}},
        ),
        lambda who, t, f: False,
    ),
    Case(
        "an inactive consent",
        consent("deny", status="inactive"),
        lambda who, t, f: False,
    ),
]


async def ask(
    svc: FhirService, ctx: AccessContext, path: str, *query: tuple[str, str]
) -> tuple[int, dict[str, Any]]:
    try:
        response = await svc.handle(
            Request("GET", path, tuple(query), context=ctx, base="http://t")
        )
    except FhirError as error:
        return error.status, {}
    body = response.body
    return response.status, orjson.loads(body) if isinstance(body, bytes) else (body or {})


def ids(bundle: dict[str, Any]) -> set[str]:
    return {
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if "resource" in e and e["resource"]["resourceType"] != "OperationOutcome"
    }


async def bulk_exported(svc: FhirService, bulk: BulkExport, ctx: AccessContext) -> set[str]:
    """What a Bulk Data `$export` by `ctx` writes into its NDJSON files."""
    query = (("_type", "Patient,Observation,Condition"),)
    kick = await svc.handle(
        Request("GET", "$export", query=query, headers={"prefer": "respond-async"}, context=ctx)
    )
    assert kick.status == 202, kick.body
    await bulk.runner.tick()
    job = await bulk.jobs.load(kick.headers["Content-Location"].split("_jobId=")[1])
    assert job is not None and job.status == "done", job
    found: set[str] = set()
    for file in job.files:
        data = b"".join([chunk async for chunk in bulk.files.read(file.sha256)])
        found |= {orjson.loads(line)["id"] for line in data.splitlines()}
    return found


def subsetted(bundle: dict[str, Any]) -> bool:
    return any(t.get("code") == "SUBSETTED" for t in bundle.get("meta", {}).get("tag", []))


async def test_consent_matrix(storage: Storage) -> None:
    svc = FhirService(storage)
    await install(svc)
    bulk = install_bulk(svc, storage.blobs("exports"), BulkOptions(settle_seconds=0.0))
    for body in resources():
        await svc.handle(
            Request("PUT", f"{body['resourceType']}/{body['id']}", body=body, context=SYSTEM)
        )
    escapes: list[str] = []
    refusals: list[str] = []

    def compare(case: Case, who: str, what: str, seen: set[str], expect: set[str]) -> None:
        escapes.extend(f"{case.name} / {who} / {what}: {i}" for i in sorted(seen - expect))
        refusals.extend(f"{case.name} / {who} / {what}: {i}" for i in sorted(expect - seen))

    for case in CASES:
        await svc.handle(Request("PUT", "Consent/c1", body=case.consent, context=SYSTEM))
        for who, ctx in ACTORS.items():
            allowed = {id for id, (t, f) in DATA.items() if not case.denied(who, t, f)}
            allowed |= {id.replace("a", "b", 1) for id in DATA}  # B: no consent
            for id, (type, _) in DATA.items():  # reads
                status, _ = await ask(svc, ctx, f"{type}/{id}")
                compare(case, who, "read", {id} if status == 200 else set(), {id} & allowed)
            for type in ("Observation", "Condition"):  # searches, and their SUBSETTED tag
                status, found = await ask(svc, ctx, type)
                expect = {i for i, (t, _) in DATA.items() if t == type} | {
                    i.replace("a", "b", 1) for i, (t, _) in DATA.items() if t == type
                }
                compare(case, who, f"search {type}", ids(found), expect & allowed)
                if found.get("total") != len(expect & allowed):  # withheld ones not counted
                    escapes.append(f"{case.name} / {who} / {type}: total {found.get('total')}")
                if subsetted(found) != bool(expect - allowed):
                    escapes.append(f"{case.name} / {who} / {type}: SUBSETTED={subsetted(found)}")
            exported: set[str] = set()
            for type in ("Patient", "Observation", "Condition"):
                exported |= {orjson.loads(data)["id"] async for data in svc.export(ctx, type)}
            compare(case, who, "export", exported, allowed)
            compare(case, who, "$export", await bulk_exported(svc, bulk, ctx), allowed)
            _, found = await ask(
                svc,
                ctx,
                "Patient",
                ("_revinclude", "Observation:subject"),
                ("_revinclude", "Condition:subject"),
            )
            compare(case, who, "revinclude", ids(found), allowed)
            _, found = await ask(svc, ctx, "Observation", ("_include", "Observation:subject"))
            observations = {i for i in allowed if i[2:] in ("glucose", "weight", "psych")}
            linked = {i[0] for i in observations} & allowed
            compare(case, who, "include", ids(found), observations | linked)
            _, found = await ask(
                svc, ctx, "Patient", ("_has:Observation:subject:code", f"{LOINC}|1234-5")
            )
            has: set[str] = {p for p in ("a", "b") if p in allowed and f"{p}-glucose" in allowed}
            compare(case, who, "_has", ids(found), has)
            _, found = await ask(svc, ctx, "Condition", ("subject:Patient.family", "Fama"))
            compare(
                case, who, "chain", ids(found), {"a-cond"} & allowed if "a" in allowed else set()
            )
    assert not escapes, "withheld resources reached a caller:\n" + "\n".join(escapes)
    assert not refusals, "consented resources were withheld:\n" + "\n".join(refusals)
