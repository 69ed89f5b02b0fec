"""SmartPolicy decisions the scope matrix does not spell out, one resource at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from fhir_server.auth.policy import SmartPolicy
from fhir_server.context import SYSTEM, AccessContext
from fhir_server.errors import Forbidden
from fhir_server.model import fhirjson
from fhir_server.search.conditions import SearchQuery
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import StoredResource


@pytest.fixture(scope="module")
def policy() -> SmartPolicy:
    return SmartPolicy(build_registry())


def ctx(scope: str, patient: str | None = "p1", **extra: str) -> AccessContext:
    return AccessContext(subject="u", scopes=frozenset(scope.split()), patient=patient, **extra)  # type: ignore[arg-type]


def stored(resource: Mapping[str, Any]) -> StoredResource:
    return StoredResource(
        str(resource["resourceType"]),
        str(resource["id"]),
        1,
        "2026",
        False,
        fhirjson.dumps(dict(resource)),
    )


def observation(subject: str, code: str = "1") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"o-{subject}-{code}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}], "text": "x"},
        "subject": {"reference": f"Patient/{subject}"},
    }


def test_a_granular_query_the_policy_cannot_judge_grants_nothing(policy: SmartPolicy) -> None:
    caller = ctx("patient/Observation.rs?code:text=x")
    assert not policy.visible(caller, stored(observation("p1")))
    restricted = policy.restrict(caller, SearchQuery(("Observation",)))
    assert restricted.clauses and restricted != SearchQuery(("Observation",))


def test_a_granular_query_judges_reads(policy: SmartPolicy) -> None:
    caller = ctx("patient/Observation.rs?code=http://loinc.org|1")
    assert policy.visible(caller, stored(observation("p1", "1")))
    assert not policy.visible(caller, stored(observation("p1", "2")))
    assert not policy.visible(caller, stored(observation("p2", "1")))


def test_admin_needs_every_system_right(policy: SmartPolicy) -> None:
    for scope in ("system/*.*", "system/*.cruds"):
        policy.check(ctx(scope, None), "admin", None)
    for scope in ("system/*.rs", "user/*.*", "system/Patient.cruds", "patient/*.*"):
        with pytest.raises(Forbidden):
            policy.check(ctx(scope), "admin", None)
    policy.check(SYSTEM, "admin", None)


def test_shared_data_is_read_by_patient_scopes_but_not_written(policy: SmartPolicy) -> None:
    practitioner = {"resourceType": "Practitioner", "id": "dr1"}
    assert policy.visible(ctx("patient/*.read"), stored(practitioner))
    with pytest.raises(Forbidden):
        policy.check_resource(ctx("patient/*.*"), "create", "Practitioner", practitioner)
    policy.check_resource(
        ctx("user/*.*", None, fhir_user="Practitioner/dr1"), "create", "Practitioner", practitioner
    )


def test_binary_follows_its_security_context(policy: SmartPolicy) -> None:
    mine = {
        "resourceType": "Binary",
        "id": "b",
        "contentType": "text/plain",
        "securityContext": {"reference": "Patient/p1"},
    }
    theirs = {**mine, "securityContext": {"reference": "Patient/p2"}}
    loose = {k: v for k, v in mine.items() if k != "securityContext"}
    caller = ctx("patient/Binary.cruds")
    assert policy.visible(caller, stored(mine))
    assert not policy.visible(caller, stored(theirs)) and not policy.visible(caller, stored(loose))
    policy.check_resource(caller, "create", "Binary", mine)
    with pytest.raises(Forbidden):
        policy.check_resource(caller, "create", "Binary", theirs)
    assert policy.visible(ctx("system/Binary.rs", None), stored(theirs))


def test_patients_linked_to_the_launch_patient_are_in_its_compartment(policy: SmartPolicy) -> None:
    linked = {
        "resourceType": "Patient",
        "id": "p9",
        "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
    }
    assert policy.visible(ctx("patient/Patient.r"), stored(linked))
    assert not policy.visible(
        ctx("patient/Patient.r"), stored({"resourceType": "Patient", "id": "p9"})
    )


def test_a_deletion_is_seen_only_without_restriction(policy: SmartPolicy) -> None:
    tombstone = StoredResource("Observation", "o", 2, "2026", True, b"", "DELETE")
    assert not policy.visible(ctx("patient/Observation.rs"), tombstone)
    assert policy.visible(ctx("system/Observation.rs", None), tombstone)


def test_task_and_device_follow_their_patient(policy: SmartPolicy) -> None:
    task = {
        "resourceType": "Task",
        "id": "t",
        "status": "ready",
        "intent": "order",
        "for": {"reference": "Patient/p2"},
    }
    device = {"resourceType": "Device", "id": "d", "patient": {"reference": "Patient/p1"}}
    caller = ctx("patient/*.read")
    assert not policy.visible(caller, stored(task))
    assert policy.visible(caller, stored(device))


def patient(id_: str, org: str | None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id_}
    if org:
        resource["managingOrganization"] = {"reference": f"Organization/{org}"}
    return resource


def test_a_clinician_limited_to_their_organizations(policy: SmartPolicy) -> None:
    caller = AccessContext(
        subject="u",
        scopes=frozenset({"user/*.cruds"}),
        fhir_user="Practitioner/pr1",
        role="clinician",
        user_patients=frozenset({"p1"}),
        user_organizations=frozenset({"Organization/org1"}),
    )
    assert policy.visible(caller, stored(patient("p1", "org1")))
    assert not policy.visible(caller, stored(patient("p3", "org2")))
    assert policy.visible(caller, stored(observation("p1")))
    assert not policy.visible(caller, stored(observation("p3")))
    policy.check_resource(caller, "create", "Patient", patient("new", "org1"))
    for outside in (patient("new", "org2"), patient("new", None)):
        with pytest.raises(Forbidden):
            policy.check_resource(caller, "create", "Patient", outside)
    with pytest.raises(Forbidden):  # moving a patient to another organization
        policy.check_resource(caller, "update", "Patient", patient("p1", "org2"))
    with pytest.raises(Forbidden):
        policy.check_resource(caller, "create", "Observation", observation("p3"))
    nowhere = AccessContext(
        subject="u",
        scopes=frozenset({"user/*.cruds"}),
        fhir_user="Practitioner/pr9",
        role="clinician",
        user_patients=frozenset(),
        user_organizations=frozenset(),
    )
    assert not policy.visible(nowhere, stored(patient("p1", "org1")))
    assert not policy.visible(nowhere, stored(observation("p1")))
