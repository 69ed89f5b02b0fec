"""`order-select` / `order-sign` "custom foot orthosis order check".

For each draft DeviceRequest of a custom foot orthosis (code in the custom-foot-orthosis value
set: HCPCS L3030 "Foot insert, removable, formed to patient foot", or the orthotics
workflow's own device code) among the hook's
`draftOrders` (on `order-select`, only the ones in `selections` when it names any), it checks
that the patient has
- a foot scan: a DocumentReference (not superseded or in error) whose content is a mesh
  (model/stl, model/ply or model/obj) and that is not typed as a design's output by the
  orthotics workflow (`DOCUMENT_TYPE`), either related to the order (the DocumentReference's
  `context.related` or the DeviceRequest's `supportingInfo` points at the other) or recent
  (within `SCAN_LIMIT`);
- the foot measurements (foot length, ball width, heel width, arch height; the orthotics
  workflow's codes, `MEASUREMENTS`), each linked to the order (its `supportingInfo`, where
  the workflow reads them) or recent (within `MEASUREMENT_LIMIT`).
When something is missing or too old it answers one warning card that says what, with a
suggestion per missing item that creates a draft ServiceRequest for it, unless such a
ServiceRequest is already draft or active. When all is there it answers no card.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from cds_hooks.rules import valuesets as vs
from cds_hooks.rules.fhirdata import (
    JSON,
    coded_value,
    codings,
    entries,
    has_code,
    listed,
    observation_date,
    observation_stands,
    parse_date,
    reference_to,
    references,
)
from cds_hooks.rules.findings import Finding, day, limit_text, missing
from cds_hooks.service import Action, Card, CdsResponse, HookCall, ServiceDefinition, Suggestion

# The orthotics workflow's foot measurement codes (adapters/orthotics/codes.py), UCUM mm.
MEASUREMENTS = "urn:fhir-server:CodeSystem:foot-measurement"
MEASUREMENT_CODES = {
    "foot-length": "Foot length",
    "ball-width": "Ball width",
    "heel-width": "Heel width",
    "arch-height": "Arch height",
}
ORDERS = "http://fhir-server.local/CodeSystem/foot-orthosis-services"
SCAN_ORDER = ("foot-scan", "3D foot scan for a custom foot orthosis")
MEASURE_ORDER = ("foot-measurements", "Foot measurements for a custom foot orthosis")
MESH_TYPES = frozenset({"model/stl", "model/ply", "model/obj"})
# The orthotics workflow types its DocumentReferences: scans, or the meshes a design issued.
DOCUMENT_TYPE = "urn:fhir-server:CodeSystem:orthosis-document"
SCAN_KINDS = frozenset({"foot-scan", "foot-scan-left", "foot-scan-right"})
SCAN_LIMIT = timedelta(days=90)
MEASUREMENT_LIMIT = timedelta(days=90)
SOURCE = "Custom foot orthosis order check"

_MEASUREMENT_QUERY = ",".join(f"{MEASUREMENTS}|{code}" for code in MEASUREMENT_CODES)
_PREFETCH = {
    "scans": "DocumentReference?patient={{context.patientId}}&_sort=-date&_count=100",
    "measurements": (
        "Observation?patient={{context.patientId}}&code="
        + _MEASUREMENT_QUERY
        + "&_sort=-date&_count=100"
    ),
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}&status=draft,active",
}
_DESCRIPTION = (
    "Checks a draft custom foot orthosis order (HCPCS L3030) for a recent 3D foot scan and the "
    "foot measurements, and suggests ordering what is missing."
)
SELECT = ServiceDefinition(
    id="foot-orthosis-order-select",
    hook="order-select",
    title="Custom foot orthosis order check",
    description=_DESCRIPTION,
    prefetch=_PREFETCH,
)
SIGN = ServiceDefinition(
    id="foot-orthosis-order-sign",
    hook="order-sign",
    title="Custom foot orthosis order check",
    description=_DESCRIPTION,
    prefetch=_PREFETCH,
)


class FootOrthosisCheck:
    def __init__(
        self, definition: ServiceDefinition, codes: vs.Membership, clock: Callable[[], datetime]
    ) -> None:
        self.definition = definition
        self._codes = codes
        self._clock = clock

    def evaluate(self, call: HookCall) -> CdsResponse:
        orders = self._orthosis_orders(call)
        patient_id = call.context.get("patientId")
        if not orders or not isinstance(patient_id, str):
            return CdsResponse()
        now = self._clock()
        scan = _scan(entries(call.prefetch.get("scans"), "DocumentReference"), orders, now)
        observations = entries(call.prefetch.get("measurements"), "Observation")
        linked = {ref for order in orders for ref in references(order.get("supportingInfo"))}
        measures = [
            _measurement(observations, code, label, now, linked)
            for code, label in MEASUREMENT_CODES.items()
        ]
        if scan.usable and all(m.usable for m in measures):
            return CdsResponse()
        pending = _pending_orders(entries(call.prefetch.get("serviceRequests"), "ServiceRequest"))
        return CdsResponse((_card(scan, measures, pending, patient_id, orders),))

    def _orthosis_orders(self, call: HookCall) -> list[JSON]:
        drafts = entries(call.context.get("draftOrders"), "DeviceRequest")
        selected = call.context.get("selections")
        if call.hook == "order-select" and isinstance(selected, list) and selected:
            wanted = {s for s in selected if isinstance(s, str)}  # a set: no n x m scan
            drafts = [d for d in drafts if reference_to(d) in wanted]
        return [
            d
            for d in drafts
            if self._codes.concept_in(d.get("codeCodeableConcept"), vs.CUSTOM_FOOT_ORTHOSIS)
        ]


def _is_mesh(document: JSON) -> bool:
    """A mesh document that is not one a design issued (typed as another orthosis document)."""
    kinds = {code for system, code in codings(document.get("type")) if system == DOCUMENT_TYPE}
    if kinds and not kinds & SCAN_KINDS:
        return False
    for content in listed(document.get("content")):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        kind = attachment.get("contentType") if isinstance(attachment, dict) else None
        if isinstance(kind, str) and kind.split(";")[0].strip().lower() in MESH_TYPES:
            return True
    return False


def _document_date(document: JSON) -> datetime | None:
    moment = parse_date(document.get("date"))
    for content in listed(document.get("content")):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if moment is None and isinstance(attachment, dict):
            moment = parse_date(attachment.get("creation"))
    return moment


def _related(document: JSON, orders: list[JSON]) -> bool:
    context = document.get("context")
    linked = references(context.get("related")) if isinstance(context, dict) else set()
    own = reference_to(document)
    return any(
        reference_to(order) in linked
        or (own is not None and own in references(order.get("supportingInfo")))
        for order in orders
    )


def _scan(documents: list[JSON], orders: list[JSON], now: datetime) -> Finding:
    label = "3D foot scan"
    scans = [
        d
        for d in documents
        if d.get("status") not in ("superseded", "entered-in-error") and _is_mesh(d)
    ]
    for document in scans:
        if _related(document, orders):
            return Finding(label, True, f"{reference_to(document)}, linked to the order")
    dated = sorted(
        ((when, d) for d in scans if (when := _document_date(d)) is not None),
        key=lambda pair: pair[0],
        reverse=True,
    )
    if not dated:
        return missing(label, "no foot scan (STL, PLY or OBJ) on record")
    when, document = dated[0]
    if now - when > SCAN_LIMIT:
        return missing(
            label, f"the latest, of {day(when)}, is older than the {limit_text(SCAN_LIMIT)} limit"
        )
    return Finding(label, True, f"{reference_to(document)} of {day(when)}")


def _measurement(
    observations: list[JSON], code: str, label: str, now: datetime, linked: set[str]
) -> Finding:
    """The newest standing measurement of `code`: one the order links (supportingInfo)
    counts whatever its date, any other within `MEASUREMENT_LIMIT`."""
    found = [
        (observation_date(o), o)
        for o in observations
        if observation_stands(o) and coded_value(o, MEASUREMENTS, code) is not None
    ]
    for _, observation in found:
        if reference_to(observation) in linked:
            return Finding(label, True, f"{_amount(observation, code)}, linked to the order")
    dated = sorted(((w, o) for w, o in found if w is not None), key=lambda p: p[0], reverse=True)
    if not dated:
        return missing(label, "none on record")
    when, observation = dated[0]
    if now - when > MEASUREMENT_LIMIT:
        return missing(
            label,
            f"the latest, of {day(when)}, is older than the {limit_text(MEASUREMENT_LIMIT)} limit",
        )
    return Finding(label, True, f"{_amount(observation, code)} on {day(when)}")


def _amount(observation: JSON, code: str) -> str:
    value = coded_value(observation, MEASUREMENTS, code)
    if not isinstance(value, dict):
        return "recorded"
    return f"{value.get('value')} {value.get('unit') or value.get('code') or ''}".strip()


def _pending_orders(requests: list[JSON]) -> dict[str, str]:
    """Local order code -> the draft or active ServiceRequest that already asks for it."""
    pending: dict[str, str] = {}
    for request in requests:
        if request.get("status") not in ("draft", "active"):
            continue
        for code, _ in (SCAN_ORDER, MEASURE_ORDER):
            if has_code(request.get("code"), ORDERS, (code,)):
                pending.setdefault(code, reference_to(request) or "a ServiceRequest")
    return pending


def _service_request(order: tuple[str, str], patient_id: str, orders: list[JSON]) -> JSON:
    code, display = order
    request: JSON = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [{"system": ORDERS, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    linked = [{"reference": ref} for o in orders if (ref := reference_to(o))]
    if linked:
        request["supportingInfo"] = linked
    return request


def _card(
    scan: Finding,
    measures: list[Finding],
    pending: dict[str, str],
    patient_id: str,
    orders: list[JSON],
) -> Card:
    lines = [f.line() for f in [scan, *measures]]
    needs: list[tuple[tuple[str, str], str]] = []
    if not scan.usable:
        needs.append((SCAN_ORDER, "Order a 3D foot scan"))
    if not all(m.usable for m in measures):
        needs.append((MEASURE_ORDER, "Order foot measurements"))
    suggestions = []
    for order, label in needs:
        if order[0] in pending:
            lines.append(f"- Already ordered: {order[1]} ({pending[order[0]]})")
            continue
        action = Action(
            "create",
            f"Draft a ServiceRequest: {order[1]}",
            _service_request(order, patient_id, orders),
        )
        suggestions.append(Suggestion(label, (action,)))
    gaps = [label.removeprefix("Order ") for _, label in needs]
    return Card(
        summary="Custom foot orthosis order: " + " and ".join(gaps) + " missing or too old",
        indicator="warning",
        source_label=SOURCE,
        detail="The orthosis is made from the patient's foot scan and measurements.\n\n"
        + "\n".join(lines),
        suggestions=tuple(suggestions),
        selection_behavior="any" if suggestions else None,
    )
