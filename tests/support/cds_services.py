"""Small CDS services for the protocol's tests (the real ones live in cds_hooks)."""

from __future__ import annotations

from cds_hooks.service import (
    Action,
    Card,
    CdsResponse,
    Coding,
    HookCall,
    Link,
    ServiceDefinition,
    Suggestion,
)

HBA1C = "http://loinc.org|4548-4"
OVERRIDE = Coding(
    "not-relevant", "http://example.org/cds-override", "Not relevant for this patient"
)


class Hba1cService:
    """patient-view: a warning card when the patient has no HbA1c, with a suggestion to
    order one; an info card with the latest value otherwise. Records every call."""

    definition = ServiceDefinition(
        id="test-hba1c",
        hook="patient-view",
        title="HbA1c on file",
        description="Says whether the patient has an HbA1c result (a test service)",
        prefetch={
            "patient": "Patient/{{context.patientId}}",
            "hba1c": "Observation?patient={{context.patientId}}&code=" + HBA1C,
        },
    )

    def __init__(self) -> None:
        self.calls: list[HookCall] = []

    def evaluate(self, call: HookCall) -> CdsResponse:
        self.calls.append(call)
        patient, bundle = call.prefetch["patient"], call.prefetch["hba1c"]
        if patient is None:
            return CdsResponse()
        entries = (bundle or {}).get("entry", [])
        if entries:
            value = entries[0]["resource"]["valueQuantity"]["value"]
            return CdsResponse((Card(f"HbA1c on file: {value} %", "info", "Test CDS"),))
        order = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        }
        card = Card(
            "No HbA1c on file",
            "warning",
            "Test CDS",
            suggestions=(Suggestion("Order HbA1c", (Action("create", "Order HbA1c", order),)),),
            selection_behavior="at-most-one",
            override_reasons=(OVERRIDE,),
            links=(Link("Guideline", "https://example.org/hba1c"),),
        )
        return CdsResponse((card,))


class BrokenService:
    """Raises on every call."""

    definition = ServiceDefinition(
        id="test-broken", hook="patient-view", title="Broken", description="Always fails"
    )

    def evaluate(self, call: HookCall) -> CdsResponse:
        raise RuntimeError("secret detail that must not reach the client")


class UnknownAppService:
    """Links a SMART app that is not registered here."""

    definition = ServiceDefinition(
        id="test-unknown-app", hook="patient-view", title="Bad link", description="Bad link"
    )

    def evaluate(self, call: HookCall) -> CdsResponse:
        link = Link("App", "https://unknown-app.example.org/launch", "smart", "ctx")
        return CdsResponse((Card("See the app", "info", "Test CDS", links=(link,)),))


class OrderSignService:
    """order-sign, no prefetch: counts the draft orders."""

    definition = ServiceDefinition(
        id="test-order-sign", hook="order-sign", title="Orders", description="Counts orders"
    )

    def evaluate(self, call: HookCall) -> CdsResponse:
        count = len(call.context["draftOrders"].get("entry", []))
        return CdsResponse((Card(f"{count} draft orders", "info", "Test CDS"),))


def test_services() -> list[object]:
    return [Hba1cService(), BrokenService(), UnknownAppService(), OrderSignService()]
