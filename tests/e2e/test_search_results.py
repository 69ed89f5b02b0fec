"""`_include`, `_revinclude`, compartment search, `_sort` paging and `$everything` over real
HTTP: the links a client follows are real URLs of the server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.e2e.helpers import unique


def _put(client: httpx.Client, resource: dict[str, Any]) -> None:
    response = client.put(
        f"/{resource['resourceType']}/{resource['id']}",
        json=resource,
        headers={"Content-Type": "application/fhir+json"},
    )
    assert response.status_code in (200, 201), response.text


def _refs(body: dict[str, Any], mode: str | None = None) -> list[str]:
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in body.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


def _without_audit(refs: list[str]) -> list[str]:
    return [ref for ref in refs if not ref.startswith("AuditEvent/")]


def _follow(client: httpx.Client, body: dict[str, Any]) -> list[str]:
    """The refs of this page and of every `next` page after it, fetched by their URLs."""
    out = _refs(body, "match")
    while (
        url := next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
    ) is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        body = response.json()
        out.extend(_refs(body, "match"))
    return out


def test_includes_compartments_and_everything(client: httpx.Client) -> None:
    tag = unique()
    gp, patient = f"gp-{tag}", f"p-{tag}"
    _put(client, {"resourceType": "Practitioner", "id": gp})
    _put(
        client,
        {
            "resourceType": "Patient",
            "id": patient,
            "generalPractitioner": [{"reference": f"Practitioner/{gp}"}],
        },
    )
    observations = [f"o{n}-{tag}" for n in range(5)]
    for n, id in enumerate(observations):
        _put(
            client,
            {
                "resourceType": "Observation",
                "id": id,
                "status": "final",
                "code": {"text": tag},
                "subject": {"reference": f"Patient/{patient}"},
                "valueQuantity": {"value": 10 - n},
            },
        )
    strict = {"Prefer": "handling=strict"}

    found = client.get(
        "/Observation",
        headers=strict,
        params={
            "subject": f"Patient/{patient}",
            "_include": "Observation:subject",
            "_include:iterate": "Patient:general-practitioner",
        },
    ).json()
    assert sorted(_refs(found, "include")) == [f"Patient/{patient}", f"Practitioner/{gp}"]
    rev = client.post(
        "/Patient/_search",
        headers=strict,
        data={"_id": patient, "_revinclude": "Observation:subject"},
    ).json()
    assert sorted(_refs(rev, "include")) == sorted(f"Observation/{o}" for o in observations)

    # sorted by value, two per page, following the server's own next links
    page = client.get(
        f"/Patient/{patient}/Observation",
        headers=strict,
        params={"_sort": "value-quantity", "_count": "2"},
    ).json()
    assert _follow(client, page) == [f"Observation/{o}" for o in reversed(observations)]

    # The shared server keeps its audit trail and, authorization off, shows AuditEvents to
    # everyone: those naming the patient are in its compartment once the trail stored
    # them, which may happen between any two requests. The record is all but those.
    record = [f"Patient/{patient}", *(f"Observation/{o}" for o in observations)]
    whole = client.get(f"/Patient/{patient}/$everything", params={"_count": "100"})
    assert whole.status_code == 200, whole.text
    assert whole.json()["total"] == len(whole.json()["entry"])
    assert _without_audit(_refs(whole.json(), "match")) == record
    assert _refs(whole.json(), "include") == [f"Practitioner/{gp}"]
    everything = client.get(f"/Patient/{patient}/$everything", params={"_count": "3"})
    assert everything.status_code == 200, everything.text
    assert len(everything.json()["entry"]) == 3
    assert _without_audit(_follow(client, everything.json())) == record
    # the include mode of the referenced practitioner is not "match"
    last = client.get(f"/Patient/{patient}/$everything", params={"_type": "Practitioner"})
    assert _refs(last.json(), "include") == [f"Practitioner/{gp}"]

    wrong = client.get(f"/Patient/{patient}/Organization")
    assert wrong.status_code == 400
    assert wrong.json()["resourceType"] == "OperationOutcome"
