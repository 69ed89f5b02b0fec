"""The custom foot orthosis order check on `order-select` and `order-sign`."""

from __future__ import annotations

from typing import Any

import pytest

from cds_hooks.rules import services
from cds_hooks.rules.foot_orthosis import MEASUREMENTS, ORDERS, FootOrthosisCheck
from tests.unit.cds_rules.records import bundle, call, clock, days_ago

HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ALL_MEASURES = ("foot-length", "ball-width", "heel-width", "arch-height")


def by_hook(hook: str) -> FootOrthosisCheck:
    found = [s for s in services(clock=clock) if s.definition.hook == hook]
    assert len(found) == 1 and isinstance(found[0], FootOrthosisCheck)
    return found[0]


def device_request(code: str = "L3030", rid: str = "dr1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DeviceRequest",
        "id": rid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "codeCodeableConcept": {"coding": [{"system": HCPCS, "code": code}]},
        **extra,
    }


def scan(
    age_days: int = 10, content_type: str = "model/stl", rid: str = "scan1", **extra: Any
) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": rid,
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "date": days_ago(age_days),
        "content": [{"attachment": {"contentType": content_type, "url": "Binary/b1"}}],
        **extra,
    }


def measure(code: str, value: float = 250, age_days: int = 10) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": MEASUREMENTS, "code": code}]},
        "effectiveDateTime": days_ago(age_days),
        "valueQuantity": {
            "value": value,
            "unit": "mm",
            "system": "http://unitsofmeasure.org",
            "code": "mm",
        },
    }


def check(
    hook: str = "order-sign",
    orders: tuple[dict[str, Any], ...] = (),
    scans: tuple[dict[str, Any], ...] = (),
    measures: tuple[dict[str, Any], ...] = (),
    requests: tuple[dict[str, Any], ...] = (),
    selections: list[str] | None = None,
):
    context: dict[str, Any] = {
        "userId": "Practitioner/u1",
        "patientId": "p1",
        "draftOrders": bundle(*(orders or (device_request(),))),
    }
    if selections is not None:
        context["selections"] = selections
    service = by_hook(hook)
    return service.evaluate(
        call(
            hook,  # type: ignore[arg-type]
            context,
            scans=bundle(*scans),
            measurements=bundle(*measures),
            serviceRequests=bundle(*requests),
        )
    )


COMPLETE: dict[str, Any] = {"scans": (scan(),), "measures": tuple(measure(c) for c in ALL_MEASURES)}


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_a_recent_scan_and_every_measurement_give_no_card(hook):
    assert check(hook, **COMPLETE).cards == ()


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_nothing_on_record_warns_and_suggests_both_orders(hook):
    (card,) = check(hook).cards
    assert card.indicator == "warning"
    assert (
        card.summary
        == "Custom foot orthosis order: a 3D foot scan and foot measurements missing or too old"
    )
    assert card.selection_behavior == "any"
    assert [s.label for s in card.suggestions] == [
        "Order a 3D foot scan",
        "Order foot measurements",
    ]
    requests = [s.actions[0].resource for s in card.suggestions]
    assert all(r["resourceType"] == "ServiceRequest" and r["status"] == "draft" for r in requests)
    assert [r["code"]["coding"][0]["code"] for r in requests] == ["foot-scan", "foot-measurements"]
    assert requests[0]["supportingInfo"] == [{"reference": "DeviceRequest/dr1"}]
    assert requests[0]["subject"] == {"reference": "Patient/p1"}
    assert "no foot scan (STL, PLY or OBJ) on record" in card.detail


def test_an_old_scan_is_too_old_and_says_the_limit():
    (card,) = check(scans=(scan(200),), measures=COMPLETE["measures"]).cards
    assert "older than the 90 days limit" in card.detail
    assert [s.label for s in card.suggestions] == ["Order a 3D foot scan"]


def test_an_old_scan_related_to_the_order_counts():
    related = scan(200, context={"related": [{"reference": "DeviceRequest/dr1"}]})
    assert check(scans=(related,), measures=COMPLETE["measures"]).cards == ()
    linked_order = device_request(supportingInfo=[{"reference": "DocumentReference/scan1"}])
    assert (
        check(orders=(linked_order,), scans=(scan(200),), measures=COMPLETE["measures"]).cards == ()
    )


@pytest.mark.parametrize("content_type", ["model/ply", "model/obj", "MODEL/STL; charset=binary"])
def test_every_mesh_format_counts(content_type):
    assert (
        check(scans=(scan(content_type=content_type),), measures=COMPLETE["measures"]).cards == ()
    )


def test_a_document_that_is_not_a_mesh_or_was_entered_in_error_does_not_count():
    pdf = scan(content_type="application/pdf", rid="pdf")
    wrong = scan(rid="wrong", status="entered-in-error")
    (card,) = check(scans=(pdf, wrong), measures=COMPLETE["measures"]).cards
    assert "no foot scan" in card.detail


def test_a_mesh_a_design_issued_is_not_a_scan():
    kind = "urn:fhir-server:CodeSystem:orthosis-document"
    related = {"related": [{"reference": "DeviceRequest/dr1"}]}
    insole = scan(
        rid="out", type={"coding": [{"system": kind, "code": "insole-stl"}]}, context=related
    )
    (card,) = check(scans=(insole,), measures=COMPLETE["measures"]).cards
    assert "no foot scan" in card.detail
    left = scan(
        200,
        rid="left",
        type={"coding": [{"system": kind, "code": "foot-scan-left"}]},
        context=related,
    )
    assert check(scans=(insole, left), measures=COMPLETE["measures"]).cards == ()


def test_one_missing_and_one_old_measurement():
    measures = (measure("foot-length"), measure("ball-width"), measure("heel-width", age_days=120))
    (card,) = check(scans=COMPLETE["scans"], measures=measures).cards
    assert "- Arch height: none on record" in card.detail
    assert "- Heel width: the latest, of" in card.detail and "90 days limit" in card.detail
    assert "- Foot length: 250 mm on" in card.detail
    assert [s.label for s in card.suggestions] == ["Order foot measurements"]


def test_old_measurements_linked_to_the_order_count():
    measures = tuple(dict(measure(c, age_days=300), id=f"m-{c}") for c in ALL_MEASURES)
    linked = device_request(
        supportingInfo=[{"reference": f"Observation/m-{c}"} for c in ALL_MEASURES]
    )
    assert check(orders=(linked,), scans=COMPLETE["scans"], measures=measures).cards == ()
    (card,) = check(scans=COMPLETE["scans"], measures=measures).cards  # not linked: too old
    assert "90 days limit" in card.detail


def test_an_open_service_request_is_not_suggested_again():
    pending = {
        "resourceType": "ServiceRequest",
        "id": "sr9",
        "status": "active",
        "intent": "order",
        "code": {"coding": [{"system": ORDERS, "code": "foot-scan"}]},
        "subject": {"reference": "Patient/p1"},
    }
    (card,) = check(measures=COMPLETE["measures"], requests=(pending,)).cards
    assert card.suggestions == () and card.selection_behavior is None
    assert (
        "Already ordered: 3D foot scan for a custom foot orthosis (ServiceRequest/sr9)"
        in card.detail
    )


@pytest.mark.parametrize(
    ("system", "code"),
    [
        ("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "L3030"),
        ("urn:fhir-server:CodeSystem:orthosis-device", "custom-foot-orthosis"),
    ],
)
def test_the_other_spellings_of_the_order_code_are_checked_too(system, code):
    order = device_request()
    order["codeCodeableConcept"] = {"coding": [{"system": system, "code": code}]}
    assert len(check(orders=(order,)).cards) == 1


def test_other_device_orders_are_not_checked():
    assert check(orders=(device_request("E0110"),)).cards == ()


def test_order_select_checks_only_the_selected_orders():
    orders = (device_request(rid="dr1"), device_request("E0110", rid="dr2"))
    assert check("order-select", orders=orders, selections=["DeviceRequest/dr2"]).cards == ()
    assert len(check("order-select", orders=orders, selections=["DeviceRequest/dr1"]).cards) == 1


def test_malformed_documents_and_measurements_read_as_missing():
    documents = (
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "content": ["x", {"attachment": 3}],
            "context": "y",
        },
        {
            "resourceType": "DocumentReference",
            "id": "d2",
            "content": [{"attachment": {"contentType": 5}}],
        },
        {
            "resourceType": "DocumentReference",
            "id": "d3",
            "date": "garbage",
            "content": [{"attachment": {"contentType": "model/stl"}}],
        },
    )
    odd = dict(measure("foot-length"), effectiveDateTime="soon")
    (card,) = check(scans=documents, measures=(odd,)).cards
    assert "no foot scan" in card.detail and "- Foot length: none on record" in card.detail


class _CountingList(list[Any]):
    """A `selections` array that counts how often it is scanned for one member."""

    scans = 0

    def __contains__(self, item: object) -> bool:
        _CountingList.scans += 1
        return super().__contains__(item)


def test_order_select_looks_selections_up_in_a_set_not_once_per_draft():
    """Each draft order was looked up in the selections list: n drafts x m selections
    comparisons (20,000 of each, a 5 MB request, held the server for 4.7 s)."""
    orders = tuple(device_request(rid=f"dr{n}") for n in range(50))
    selections = _CountingList(f"DeviceRequest/dr{n}" for n in range(0, 50, 2))
    _CountingList.scans = 0
    answer = check("order-select", orders=orders, selections=selections)
    assert _CountingList.scans == 0
    assert len(answer.cards) == 1
