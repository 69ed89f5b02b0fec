"""The app the CDS Hooks figures run: the server as `fhir-server serve` builds it (settings
from FHIR_*), offering one patient-view service shaped like the shipped ones (a Patient
read and an Observation search by LOINC code as prefetch, a card from the latest value).
Run as `uvicorn bench.cds_app:app`."""

from __future__ import annotations

from cds_hooks.service import Card, CdsResponse, HookCall, ServiceDefinition
from fhir_server.api.app import create_app
from fhir_server.settings import Settings

LOINC_HBA1C = "http://loinc.org|4548-4"


class LatestHba1c:
    definition = ServiceDefinition(
        id="bench-hba1c",
        hook="patient-view",
        title="Latest HbA1c",
        description="The patient's latest HbA1c (a benchmark service)",
        prefetch={
            "patient": "Patient/{{context.patientId}}",
            "hba1c": "Observation?patient={{context.patientId}}&code="
            + LOINC_HBA1C
            + "&_sort=-date&_count=1",
        },
    )

    def evaluate(self, call: HookCall) -> CdsResponse:
        entries = (call.prefetch["hba1c"] or {}).get("entry", [])
        if call.prefetch["patient"] is None or not entries:
            return CdsResponse((Card("No HbA1c on file", "warning", "Benchmark"),))
        value = entries[0]["resource"]["valueQuantity"]["value"]
        return CdsResponse((Card(f"Latest HbA1c {value} %", "info", "Benchmark"),))


app = create_app(Settings(), cds_services=[LatestHba1c()])
