"""The draft statin order the ASCVD risk card suggests, and the reasons a clinician may give
for not taking it (CDS Hooks 2.0 `overrideReasons`, sent back with feedback)."""

from __future__ import annotations

from dataclasses import dataclass

from cds_hooks.service import Action, Coding, Suggestion

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATORVASTATIN = "83367"
OVERRIDE_SYSTEM = "http://fhir-server.local/CodeSystem/cds-override-reasons"

OVERRIDE_REASONS = (
    Coding("patient-declined", OVERRIDE_SYSTEM, "Patient declined statin therapy"),
    Coding("statin-intolerance", OVERRIDE_SYSTEM, "Statin intolerance or contraindication"),
    Coding("shared-decision-deferred", OVERRIDE_SYSTEM, "Deferred after shared decision-making"),
    Coding("lipid-therapy-elsewhere", OVERRIDE_SYSTEM, "On lipid-lowering therapy not listed here"),
)


@dataclass(frozen=True, slots=True)
class StatinSuggestion:
    suggestion: Suggestion
    override_reasons: tuple[Coding, ...]


def draft_statin(patient_id: str) -> dict[str, object]:
    """A draft MedicationRequest: atorvastatin 20 mg by mouth once daily (moderate intensity,
    2013 ACC/AHA blood cholesterol guideline). Coded by ingredient: the clinician picks the
    product when signing."""
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "proposal",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": ATORVASTATIN, "display": "atorvastatin"}],
            "text": "atorvastatin 20 mg oral tablet",
        },
        "dosageInstruction": [
            {
                "text": "20 mg by mouth once daily",
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "route": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "26643006",
                            "display": "Oral route",
                        }
                    ]
                },
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": 20,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }


def statin_suggestion(patient_id: str) -> StatinSuggestion:
    action = Action(
        "create",
        "Draft an order for atorvastatin 20 mg daily (moderate-intensity statin)",
        resource=draft_statin(patient_id),
    )
    return StatinSuggestion(
        Suggestion("Order a moderate-intensity statin", (action,), is_recommended=True),
        OVERRIDE_REASONS,
    )
