"""What the suggestions would create is valid FHIR R4."""

from __future__ import annotations

import copy

from cds_hooks.rules.foot_orthosis import MEASURE_ORDER, SCAN_ORDER, _service_request
from cds_hooks.rules.statin_order import draft_statin
from fhir_server.model.validate import validate_resource


def test_the_draft_statin_order_is_a_valid_medication_request():
    order = draft_statin("p1")
    validate_resource(copy.deepcopy(order))
    assert (order["status"], order["intent"]) == ("draft", "proposal")


def test_the_draft_service_requests_are_valid():
    orders = [{"resourceType": "DeviceRequest", "id": "dr1"}]
    for kind in (SCAN_ORDER, MEASURE_ORDER):
        request = _service_request(kind, "p1", orders)
        validate_resource(copy.deepcopy(request))
        assert request["supportingInfo"] == [{"reference": "DeviceRequest/dr1"}]
