"""Custom SearchParameters and `$reindex`, through the service, on every engine.

Expected results follow https://hl7.org/fhir/R4/searchparameter.html: a stored, active
SearchParameter is a search parameter for the resources written after it; `$reindex`
makes the older ones searchable too, without new versions.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_server.context import SYSTEM
from fhir_server.errors import BadRequest, InvalidResource, Unprocessable
from fhir_server.interactions import custom_params, reindex
from fhir_server.interactions.operations import Operation, OperationCall
from fhir_server.interactions.request import Request
from fhir_server.interactions.service import FhirService
from fhir_server.search.registry import build_registry
from fhir_server.storage.base import Storage

EYE = "http://example.org/fhir/StructureDefinition/eye-colour"
STRICT = {"prefer": "handling=strict"}


def eye_colour_param(status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "SearchParameter",
        "id": "eye-colour",
        "url": "http://example.org/fhir/SearchParameter/eye-colour",
        "name": "EyeColour",
        "status": status,
        "description": "Eye colour from the extension",
        "code": "eye-colour",
        "base": ["Patient"],
        "type": "token",
        "expression": f"Patient.extension.where(url = '{EYE}').value",
    }


def patient(colour: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "extension": [{"url": EYE, "valueCode": colour}]}


async def make_service(storage: Storage) -> FhirService:
    svc = FhirService(storage, base_url="http://test/fhir", registry=build_registry())
    await custom_params.install(svc)
    return svc


async def call(
    svc: FhirService,
    method: str,
    path: str,
    body: object = None,
    query: tuple[tuple[str, str], ...] = (),
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await svc.handle(
        Request(method, path, query, headers=headers or {}, body=body, context=SYSTEM)
    )
    data = response.body
    return orjson.loads(data) if isinstance(data, bytes) else data  # type: ignore[return-value]


async def blue_ids(svc: FhirService) -> set[str]:
    found = await call(svc, "GET", "Patient", query=(("eye-colour", "blue"),), headers=STRICT)
    return {e["resource"]["id"] for e in found.get("entry", [])}


async def test_a_new_parameter_indexes_new_writes_and_reindex_the_old(storage: Storage) -> None:
    svc = await make_service(storage)
    old_blue = (await call(svc, "POST", "Patient", patient("blue")))["id"]
    await call(svc, "POST", "Patient", patient("brown"))
    with pytest.raises(BadRequest, match="eye-colour"):
        await blue_ids(svc)  # not a parameter yet: strict handling refuses it

    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    new_blue = (await call(svc, "POST", "Patient", patient("blue")))["id"]
    assert await blue_ids(svc) == {new_blue}  # written before the parameter: not indexed yet

    result = await call(svc, "POST", "Patient/$reindex", {"resourceType": "Parameters"})
    assert result["parameter"][0] == {"name": "total", "valueInteger": 3}
    assert await blue_ids(svc) == {old_blue, new_blue}
    again = await call(svc, "GET", f"Patient/{old_blue}")
    assert again["meta"]["versionId"] == "1"  # re-indexing made no version


async def test_retiring_or_deleting_the_parameter_unregisters_it(storage: Storage) -> None:
    svc = await make_service(storage)
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    assert await blue_ids(svc) == set()
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param("retired"))
    with pytest.raises(BadRequest):
        await blue_ids(svc)
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    await call(svc, "DELETE", "SearchParameter/eye-colour")
    with pytest.raises(BadRequest):
        await blue_ids(svc)


async def test_a_restarted_server_knows_the_stored_parameters(storage: Storage) -> None:
    first = await make_service(storage)
    await call(first, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    made = (await call(first, "POST", "Patient", patient("blue")))["id"]
    second = await make_service(storage)
    assert await blue_ids(second) == {made}


@pytest.mark.parametrize(
    ("change", "element", "error"),
    [
        ({"expression": "Patient.extension.where(url = "}, "expression", Unprocessable),
        ({"base": ["NoSuchType"]}, "base", InvalidResource),
        ({"type": "colour"}, "type", InvalidResource),
        ({"code": "has space"}, "code", Unprocessable),
    ],
)
async def test_a_parameter_that_cannot_work_is_refused(
    storage: Storage, change: dict[str, Any], element: str, error: type[Exception]
) -> None:
    svc = await make_service(storage)
    with pytest.raises(error, match=f"SearchParameter.{element}"):
        await call(svc, "POST", "SearchParameter", eye_colour_param() | change)


async def test_reindex_resumes_from_its_checkpoint(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = await make_service(storage)
    ids = [(await call(svc, "POST", "Patient", patient("blue")))["id"] for _ in range(5)]
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    monkeypatch.setattr(reindex, "BATCH", 2)
    saved: list[dict[str, Any]] = []

    def crash_after_first_batch(state: reindex.Checkpoint) -> None:
        saved.append(state.to_json())
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await reindex.reindex(svc, ["Patient"], save=crash_after_first_batch)
    assert saved == [{"done": [], "type": "Patient", "last_id": ids[1], "counts": {"Patient": 2}}]
    assert await blue_ids(svc) == set(ids[:2])

    batches: list[int] = []
    state = await reindex.reindex(
        svc,
        ["Patient"],
        reindex.Checkpoint.from_json(saved[0]),
        progress=lambda type, n: batches.append(n),
    )
    assert batches == [2, 1]  # only the three not done before
    assert state.done == ["Patient"] and state.counts == {"Patient": 5}
    assert await blue_ids(svc) == set(ids)


async def test_a_background_reindex_runs_on_the_leader_and_resumes_its_saved_job(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`$reindex` with `background` queues a job in the storage; whoever runs it next (the
    leader, here another service on the same database) starts from its checkpoint."""
    svc = await make_service(storage)
    ids = [(await call(svc, "POST", "Patient", patient("blue")))["id"] for _ in range(5)]
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "type", "valueString": "Patient"},
            {"name": "background", "valueBoolean": True},
        ],
    }
    queued = await call(svc, "POST", "$reindex", body)
    assert queued["parameter"][0] == {"name": "status", "valueCode": "queued"}
    assert await blue_ids(svc) == set()  # queued, not run inside the request

    job = await reindex.load_job(svc)
    assert job is not None and job.types == ["Patient"]
    # a leader re-indexed the first two, saved its checkpoint, and died
    job.checkpoint = reindex.Checkpoint([], "Patient", ids[1], {"Patient": 2})
    await storage.save_state(reindex.JOB, job.to_json())

    monkeypatch.setattr(reindex, "JOB_BATCH", 2)
    resumed = await reindex.load_job(svc)
    assert resumed is not None
    done = await reindex.run_job(svc, resumed)
    assert done.done and done.runs == [2] and done.checkpoint.counts == {"Patient": 5}
    assert await blue_ids(svc) == set(ids[2:])  # the first two were (said to be) done
    status = await call(svc, "GET", "$reindex-status")
    assert status["parameter"][:2] == [
        {"name": "status", "valueCode": "done"},
        {"name": "total", "valueInteger": 5},
    ]


async def test_system_reindex_names_unknown_types(storage: Storage) -> None:
    svc = await make_service(storage)
    with pytest.raises(BadRequest, match="Nonsense"):
        await call(
            svc,
            "POST",
            "$reindex",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "type", "valueString": "Nonsense"}],
            },
        )


async def test_storage_reindex_touches_only_the_current_version(storage: Storage) -> None:
    svc = await make_service(storage)
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    made = await call(svc, "POST", "Patient", patient("brown"))
    await call(svc, "PUT", f"Patient/{made['id']}", patient("green") | {"id": made["id"]})
    index = svc.indexer.extract(patient("blue") | {"id": made["id"]})
    async with storage.transaction() as tx:
        assert await tx.reindex("Patient", made["id"], 1, index) is False  # stale version
        assert await tx.reindex("Patient", "nobody", 1, index) is False
    assert await blue_ids(svc) == set()
    async with storage.transaction() as tx:
        assert await tx.reindex("Patient", made["id"], 2, index) is True
    assert await blue_ids(svc) == {made["id"]}


def patient_params(statement: dict[str, Any]) -> set[str]:
    resource = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    return {p["name"] for p in resource["searchParam"]}


async def test_metadata_follows_the_registry_and_the_operations(storage: Storage) -> None:
    """A parameter stored (or retired) after the first /metadata, and an operation
    registered after it, show in the next CapabilityStatement."""
    svc = await make_service(storage)
    assert "eye-colour" not in patient_params(await call(svc, "GET", "metadata"))
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param())
    assert "eye-colour" in patient_params(await call(svc, "GET", "metadata"))
    await call(svc, "PUT", "SearchParameter/eye-colour", eye_colour_param("retired"))
    assert "eye-colour" not in patient_params(await call(svc, "GET", "metadata"))

    svc.add_operation(Operation("ping", _ping, frozenset({"system"})))
    system = (await call(svc, "GET", "metadata"))["rest"][0]
    assert "ping" in {op["name"] for op in system["operation"]}


async def _ping(svc: FhirService, call: OperationCall) -> dict[str, Any]:
    return {"resourceType": "Parameters"}
