"""Alerts: a reading outside its band raises a `Flag` and a `Communication` to the care team.

Runs as a trigger inside the transaction that stores the reading (`FhirService.add_trigger`),
so the alert commits or rolls back with it. One open alert per patient and vital sign: the
transaction takes a lock on the pair, then looks for an active Flag it raised for them
(`Flag.identifier` = `ALERT_SYSTEM` | `Patient/<id>/<code>`); while there is one, further
readings out of band raise nothing. Acknowledging the alert is setting that Flag's `status`
to `inactive` (PUT or PATCH); the next reading out of band raises a new one.

- `Flag`: status active, category clinical, `code` the vital sign's LOINC code with the
  reading in words, `subject` the patient, `period.start` when raised, `author` the
  reading's Device, and the core `flag-detail` extension pointing at the Observation.
- `Communication`: status completed, category alert, priority urgent, `subject`,
  `recipient` the plan's care team and author (or the default recipients), `about` the
  Observation and the Flag, `basedOn` the CarePlan(s), `sent`, and a text `payload`.
  Subscriptions on `Communication?recipient=...` deliver it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.monitoring import plans
from adapters.monitoring.vitals import (
    LOINC,
    QUIET_STATUSES,
    Measure,
    Vital,
    is_reading,
    measurements,
    vital_of,
)
from fhir_server.context import SYSTEM
from fhir_server.interactions.common import new_id, now_instant
from fhir_server.model import fhirjson

if TYPE_CHECKING:
    from fhir_server.interactions.service import FhirService
    from fhir_server.storage.base import StorageTx, StoredResource

ALERT_SYSTEM = "urn:fhir-server:remote-monitoring:alert"
FLAG_DETAIL = "http://hl7.org/fhir/StructureDefinition/flag-detail"
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
COMMUNICATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/communication-category"
OPEN_ALERT_SCAN = 50  # a patient's latest alerts for one code looked at for an open one


@dataclass(frozen=True, slots=True)
class Breach:
    measure: Measure
    value: float
    side: str  # "below" | "above"
    band: plans.Band

    def words(self) -> str:
        limit = self.band.low if self.side == "below" else self.band.high
        where = "the default band" if self.band.source == "default" else self.band.source
        return (
            f"{self.measure.name} {_number(self.value)} {self.measure.unit} is {self.side} "
            f"{_number(limit)} {self.measure.unit} ({where})"
        )


class Alerts:
    """The trigger on Observations: raises at most one open alert per patient and code."""

    def __init__(self, defaults: Mapping[str, plans.Bounds], recipients: list[str]) -> None:
        self.defaults = defaults
        self.recipients = recipients

    async def __call__(self, svc: FhirService, tx: StorageTx, rec: StoredResource) -> None:
        if rec.deleted or not (b'"device"' in rec.data or b"StructureDefinition/" in rec.data):
            return  # not a reading (`is_reading`): most Observations stop here, unparsed
        observation = fhirjson.loads(rec.data)
        vital = vital_of(observation)
        patient = _patient(observation)
        if vital is None or patient is None or not is_reading(observation):
            return
        if observation.get("status") in QUIET_STATUSES:
            return
        values = measurements(observation)
        if not values:
            return
        plan = await plans.load(svc, tx, patient, self.defaults, self.recipients)
        breaches = [
            Breach(measure, value, side, band)
            for measure, value in values
            if (band := plan.band(measure)) and (side := band.breach(value))
        ]
        if not breaches:
            return
        key = f"Patient/{patient}/{vital.code}"
        await tx.lock(f"monitoring-alert:{key}")
        if await _open_alert(svc, tx, key):
            return
        alert = Alert(f"Observation/{rec.id}", observation, vital, breaches, plan)
        flag_id, message_id = new_id(), new_id()
        flag = svc.validate(alert.flag())
        await svc.store(tx, "Flag", flag_id, flag, current=None, method="POST")
        message = svc.validate(alert.message(f"Flag/{flag_id}"))
        await svc.store(tx, "Communication", message_id, message, current=None, method="POST")


@dataclass(frozen=True, slots=True)
class Alert:
    """The Flag and the Communication one reading out of band raises."""

    reading: str  # "Observation/<id>"
    observation: dict[str, Any]
    vital: Vital
    breaches: list[Breach]
    plan: plans.Plan
    when: str = field(default_factory=now_instant)

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": self.observation["subject"]["reference"]}

    @property
    def words(self) -> str:
        return "; ".join(b.words() for b in self.breaches)

    def flag(self) -> dict[str, Any]:
        key = f"{self.subject['reference']}/{self.vital.code}"
        flag: dict[str, Any] = {
            "resourceType": "Flag",
            "extension": [{"url": FLAG_DETAIL, "valueReference": {"reference": self.reading}}],
            "identifier": [{"system": ALERT_SYSTEM, "value": key}],
            "status": "active",
            "category": [{"coding": [{"system": FLAG_CATEGORY, "code": "clinical"}]}],
            "code": {
                "coding": [{"system": LOINC, "code": self.vital.code, "display": self.vital.name}],
                "text": f"{self.vital.name} out of range: {self.words}",
            },
            "subject": self.subject,
            "period": {"start": self.when},
        }
        device = (self.observation.get("device") or {}).get("reference")
        if isinstance(device, str) and device.startswith("Device/"):
            flag["author"] = {"reference": device}
        return flag

    def message(self, flag: str) -> dict[str, Any]:
        taken = _taken(self.observation)
        message: dict[str, Any] = {
            "resourceType": "Communication",
            "status": "completed",
            "category": [{"coding": [{"system": COMMUNICATION_CATEGORY, "code": "alert"}]}],
            "priority": "urgent",
            "subject": self.subject,
            "about": [{"reference": self.reading}, {"reference": flag}],
            "sent": self.when,
            "payload": [
                {"contentString": f"{self.words}; measured {taken}" if taken else self.words}
            ],
        }
        if self.plan.recipients:
            message["recipient"] = [{"reference": r} for r in self.plan.recipients]
        if self.plan.care_plans:
            message["basedOn"] = [{"reference": r} for r in self.plan.care_plans]
        return message


async def _open_alert(svc: FhirService, tx: StorageTx, key: str) -> bool:
    """Whether an alert raised for `key` (Patient/x/code) is still active.

    Looks at the latest alerts for the key: a newer one is only raised once the older ones
    were acknowledged, so an active one is among the most recently changed."""
    criteria = [("identifier", f"{ALERT_SYSTEM}|{key}"), ("_sort", "-_lastUpdated")]
    found = await svc.find(tx, SYSTEM, "Flag", criteria, limit=OPEN_ALERT_SCAN)
    return any(fhirjson.loads(rec.data).get("status") == "active" for rec in found)


def _patient(observation: dict[str, Any]) -> str | None:
    reference = (observation.get("subject") or {}).get("reference")
    if isinstance(reference, str) and reference.startswith("Patient/"):
        return reference.removeprefix("Patient/") or None
    return None


def _taken(observation: dict[str, Any]) -> str | None:
    taken = observation.get("effectiveDateTime") or (observation.get("effectivePeriod") or {}).get(
        "start"
    )
    return taken if isinstance(taken, str) else None


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
