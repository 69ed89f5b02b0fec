"""The rule services are among the services the server ships."""

from __future__ import annotations

from cds_hooks.registry import collect
from fhir_server.settings import Settings

RULES = {
    "ascvd-10-year-risk",
    "cha2ds2-vasc",
    "foot-orthosis-order-select",
    "foot-orthosis-order-sign",
}


def test_the_registry_collects_the_rule_services_with_their_discovery_entries():
    services = collect(Settings())
    entries = {e["id"]: e for e in services.discovery()["services"]}
    assert set(entries) >= RULES
    assert {entries[i]["hook"] for i in RULES} == {"patient-view", "order-select", "order-sign"}
    assert all(
        entries[i]["title"] and entries[i]["description"] and entries[i]["prefetch"] for i in RULES
    )
