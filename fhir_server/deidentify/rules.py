"""The de-identification profiles, element by element.

HIPAA Safe Harbor (45 CFR 164.514(b)(2)) lists 18 kinds of identifiers of the individual
and of relatives, employers or household members that must be removed. Profile
`safe-harbor` treats them as follows (the element kinds are recognised by their names
and shape, wherever they occur, extensions included):

1. names: HumanName values (Patient, RelatedPerson, Person, Practitioner `name`,
   `valueHumanName`, anything with family/given) are removed; `Patient.contact`
   (relatives) is removed whole;
2. addresses: Address values keep only `state`, `country`, `use`, `type` and the first
   three digits of a US ZIP code (`000` for the three-digit areas of 20,000 people or
   fewer, from the HHS guidance); everything below the state is removed;
3. dates: every date, dateTime and partial date keeps only its year; instants
   (`meta.lastUpdated`, `issued`, `recorded`, `timestamp`, `when`) are removed; a
   `birthDate` of someone 90 or older is removed and the Patient marked with the
   extension `age-group` `90+`;
4-6. telephone, fax, e-mail: ContactPoint values (`telecom`) are removed;
7-11. SSN, medical record, health plan, account, licence numbers: Identifiers of those
   kinds (v2-0203 SS, MR, MB, MA, MC, SN, AN, DL, PPN, TAX, and the SSN systems) and
   `Coverage.subscriberId` are removed;
12-13. vehicle and device identifiers: Device `udiCarrier`, `serialNumber`,
   `lotNumber`, `distinctIdentifier` are removed;
14-15. URLs and IP addresses: `valueUrl`, AuditEvent `network` are removed; in kept text
   they are scrubbed;
16-17. biometric identifiers and photos: attachments (`photo`, `attachment`,
   `presentedForm`, `valueAttachment`, `content`) are removed, Binary and Media dropped;
18. any other identifier: an Identifier of another kind becomes a keyed pseudonym
   (HMAC-SHA256 under the run's key, system `urn:deidentified`), stable within the run;
   resource ids and every reference to them likewise, so the output stays joinable
   (`Type/id` -> `Type/<pseudonym of Type/id>`); conditional and logical references,
   which carry identifiers, and reference `display` texts are removed.

Free text is dropped where prose lives (narrative `text`, `note`, `comment`,
`description` and the like) and scrubbed (`text.scrub`) in every other string kept.

Profile `date-shift` does all of this except item 3: every date of a patient's
resources moves by one offset of -365..365 days derived from the key and the patient
(resources of no patient by a run-wide offset), keeping every interval within a
patient; the 90+ rule still applies. The report counts each change by element path.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import orjson

from fhir_server.deidentify.text import scrub

Profile = Literal["safe-harbor", "date-shift"]
PROFILES: tuple[Profile, ...] = ("safe-harbor", "date-shift")

PSEUDONYM_SYSTEM = "urn:deidentified"
AGE_GROUP = "urn:deidentified:age-group"
DROPPED_TYPES = frozenset({"Binary", "Media"})
PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Person", "Practitioner"})
PROSE = frozenset(
    {
        "note",
        "comment",
        "comments",
        "description",
        "patientInstruction",
        "summary",
        "conclusion",
        "narrative",
    }
)
REMOVED = frozenset(
    {
        "telecom",
        "valueContactPoint",
        "valueHumanName",
        "photo",
        "attachment",
        "presentedForm",
        "valueAttachment",
        "udiCarrier",
        "serialNumber",
        "lotNumber",
        "distinctIdentifier",
        "subscriberId",
        "valueUrl",
        "network",
        "contact",
    }
)
INSTANTS = frozenset({"lastUpdated", "issued", "recorded", "timestamp", "when"})
CODED = frozenset(
    {
        "system",
        "code",
        "url",
        "profile",
        "resourceType",
        "version",
        "unit",
        "valueCode",
        "valueCanonical",
        "valueId",
        "valueOid",
        "valueUuid",
        "contentType",
        "language",
    }
)
REMOVED_KINDS = frozenset({"SS", "MR", "MB", "MA", "MC", "SN", "AN", "DL", "PPN", "TAX", "SB"})
SSN_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
RESTRICTED_ZIP3 = frozenset(
    [
        "036",
        "059",
        "063",
        "102",
        "203",
        "556",
        "692",
        "790",
        "821",
        "823",
        "830",
        "831",
        "878",
        "879",
        "884",
        "890",
        "893",
    ]
)
US = frozenset({"US", "USA", "United States", "United States of America"})
DATE = re.compile(r"^\d{4}-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?$")
REFERENCE = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


class Report:
    """What a run changed: counts by (element path, action), resources seen and dropped."""

    def __init__(self) -> None:
        self.changes: Counter[tuple[str, str]] = Counter()
        self.resources: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def note(self, path: str, action: str) -> None:
        self.changes[(path, action)] += 1

    def as_json(self) -> dict[str, Any]:
        changes: dict[str, dict[str, int]] = {}
        for (path, action), count in sorted(self.changes.items()):
            changes.setdefault(path, {})[action] = count
        return {
            "resources": dict(sorted(self.resources.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "changes": changes,
        }


class Deidentifier:
    """One export run: `transform` each resource; `report` says what changed."""

    def __init__(
        self, profile: Profile, key: bytes | None = None, *, today: date | None = None
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
        self.profile = profile
        self.key = key or secrets.token_bytes(32)
        self.today = today or datetime.now(UTC).date()
        self.report = Report()

    def pseudonym(self, text: str) -> str:
        """A stable opaque id for `text` under this run's key (32 hex digits)."""
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:32]

    def offset(self, patient: str) -> timedelta:
        """The date shift of one patient's resources (a run-wide one for patient '')."""
        digest = hmac.new(self.key, f"shift|{patient}".encode(), hashlib.sha256).digest()
        days = int.from_bytes(digest[:4], "big") % 731 - 365
        return timedelta(days=days or 1)

    def transform(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """`resource` de-identified (a new dict), or None when it is dropped whole."""
        type = str(resource.get("resourceType"))
        if type in DROPPED_TYPES:
            self.report.dropped[type] += 1
            return None
        self.report.resources[type] += 1
        walk = _Walk(self, type, self.offset(patient_of(resource)))
        return walk.resource(resource, type)


def patient_of(resource: dict[str, Any]) -> str:
    """The patient a resource belongs to ('' for none): a Patient itself, else the first
    `Patient/` reference in its subject, patient, beneficiary or anywhere."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id") or "")
    for key in ("subject", "patient", "beneficiary"):
        ref = resource.get(key)
        if isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/"):
            return str(ref["reference"]).split("/")[1]
    found = re.search(rb'"reference":"Patient/([A-Za-z0-9\-.]+)"', _compact(resource))
    return found.group(1).decode() if found else ""


def _compact(resource: dict[str, Any]) -> bytes:
    return orjson.dumps(resource)


class _Walk:
    """The transformation of one resource (its type and date offset fixed)."""

    def __init__(self, run: Deidentifier, type: str, offset: timedelta) -> None:
        self.run = run
        self.type = type
        self.offset = offset
        self.note = run.report.note
        self.age_group = False  # the patient is 90 or older: say so instead of a birthDate

    def resource(self, resource: dict[str, Any], path: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        type = str(resource.get("resourceType"))
        for key, value in resource.items():
            where = f"{path}.{key}"
            if key == "id" and path == self.type:
                out["id"] = self.run.pseudonym(f"{type}/{value}")
                self.note(where, "pseudonymized")
            elif key == "meta" and isinstance(value, dict):
                meta = {k: v for k, v in value.items() if k in ("profile", "security", "tag")}
                for k in value.keys() - meta.keys():
                    self.note(f"{where}.{k}", "removed")
                if meta:
                    out["meta"] = meta
            elif key == "birthDate" and type == "Patient" and isinstance(value, str):
                self._birth_date(out, value, where)
            elif key == "name" and type in PERSON_TYPES:
                self.note(where, "removed")
            else:
                kept = self.element(key, value, where)
                if kept is not None:
                    out[key] = kept
        if self.age_group and path == self.type:
            out.setdefault("extension", []).append({"url": AGE_GROUP, "valueString": "90+"})
        return out

    def element(self, key: str, value: Any, path: str) -> Any:
        """`value` of `key` transformed (None: removed)."""
        if key in REMOVED or key in PROSE or (key == "text" and isinstance(value, dict)):
            self.note(path, "removed")
            return None
        if key == "content" and self.type in ("DocumentReference", "Media"):
            self.note(path, "removed")
            return None
        if key in ("identifier", "valueIdentifier"):
            return self._many(value, path, self._identifier)
        if key in ("address", "valueAddress", "locationAddress"):
            return self._many(value, path, self._address)
        if key in INSTANTS and isinstance(value, str) and DATE.match(value):
            if self.run.profile == "safe-harbor":
                self.note(path, "removed")
                return None
            return self._date(value, path)
        if isinstance(value, dict):
            return self._object(value, path)
        if isinstance(value, list):
            items = [self.element(key, v, path) for v in value]
            kept = [v for v in items if v is not None]
            return kept or None
        if isinstance(value, str):
            return self._string(key, value, path)
        return value

    def _object(self, value: dict[str, Any], path: str) -> dict[str, Any] | None:
        if "resourceType" in value:  # contained
            return self.resource(value, path)
        if _human_name(value):
            self.note(path, "removed")
            return None
        if "reference" in value or ("identifier" in value and "display" in value):
            return self._reference(value, path)
        out: dict[str, Any] = {}
        for key, item in value.items():
            kept = self.element(key, item, f"{path}.{key}")
            if kept is not None:
                out[key] = kept
        return out or None

    def _many(self, value: Any, path: str, one: Any) -> Any:
        if isinstance(value, list):
            kept = [x for x in (one(v, path) for v in value if isinstance(v, dict)) if x]
            return kept or None
        return one(value, path) if isinstance(value, dict) else None

    def _identifier(self, identifier: dict[str, Any], path: str) -> dict[str, Any] | None:
        codes = {
            str(c.get("code"))
            for c in (identifier.get("type") or {}).get("coding") or []
            if isinstance(c, dict)
        }
        if codes & REMOVED_KINDS or identifier.get("system") in SSN_SYSTEMS:
            self.note(path, "removed")
            return None
        value = identifier.get("value")
        if not isinstance(value, str):
            self.note(path, "removed")
            return None
        self.note(path, "pseudonymized")
        seed = f"identifier|{identifier.get('system', '')}|{value}"
        return {"system": PSEUDONYM_SYSTEM, "value": self.run.pseudonym(seed)}

    def _address(self, address: dict[str, Any], path: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {
            k: address[k] for k in ("use", "type", "state", "country") if k in address
        }
        zip3 = str(address.get("postalCode", ""))[:3]
        if zip3.isdigit() and len(zip3) == 3 and address.get("country", "US") in US:
            out["postalCode"] = "000" if zip3 in RESTRICTED_ZIP3 else zip3
        self.note(path, "generalized")
        return out or None

    def _reference(self, ref: dict[str, Any], path: str) -> dict[str, Any] | None:
        out: dict[str, Any] = {k: ref[k] for k in ("type",) if k in ref}
        target = ref.get("reference")
        if isinstance(target, str) and target.startswith("#"):
            out["reference"] = target
        elif isinstance(target, str) and (found := REFERENCE.match(target)) and "?" not in target:
            kind, id = found.groups()
            out["reference"] = f"{kind}/{self.run.pseudonym(f'{kind}/{id}')}"
            self.note(f"{path}.reference", "pseudonymized")
        elif isinstance(target, str) and target.startswith("urn:uuid:"):
            out["reference"] = f"urn:uuid:{_uuid(self.run.pseudonym(target))}"
            self.note(f"{path}.reference", "pseudonymized")
        elif target is not None:
            self.note(f"{path}.reference", "removed")
        for key in ("display", "identifier"):
            if key in ref:
                self.note(f"{path}.{key}", "removed")
        return out or None

    def _string(self, key: str, value: str, path: str) -> str | None:
        if key in CODED:
            return value
        if DATE.match(value):
            return self._date(value, path)
        cleaned = scrub(value)
        if cleaned != value:
            self.note(path, "scrubbed")
        return cleaned

    def _date(self, value: str, path: str) -> str:
        if self.run.profile == "safe-harbor":
            self.note(path, "generalized to the year")
            return value[:4]
        self.note(path, "shifted")
        return shift(value, self.offset)

    def _birth_date(self, out: dict[str, Any], value: str, path: str) -> None:
        if _age(value, self.run.today) >= 90:
            self.note(path, "aggregated as 90+")
            self.age_group = True
            return
        out["birthDate"] = self._date(value, path) if DATE.match(value) else value


def shift(value: str, offset: timedelta) -> str:
    """A FHIR date, partial date or dateTime moved by `offset`, at its own precision."""
    if len(value) == 7:  # YYYY-MM
        return (date.fromisoformat(value + "-01") + offset).isoformat()[:7]
    if len(value) == 10:
        return (date.fromisoformat(value) + offset).isoformat()
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) + offset
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if value.endswith("Z") else text


def _age(birth: str, today: date) -> int:
    """Completed years since `birth` (a partial date: the most it can be)."""
    year = int(birth[:4])
    if len(birth) >= 10:
        born = date.fromisoformat(birth[:10])
        return today.year - year - ((today.month, today.day) < (born.month, born.day))
    return today.year - year


def _human_name(value: dict[str, Any]) -> bool:
    return any(k in value for k in ("family", "given")) and "reference" not in value


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"
