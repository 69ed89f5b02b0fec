"""HL7 v2 datatypes to FHIR datatypes, per the HL7 v2-to-FHIR IG datatype maps.

Maps followed (mappings/datatypes/): `CX[Identifier]`, `XPN[HumanName]`, `XAD[Address]`,
`XTN[ContactPoint]`, `CWE[CodeableConcept]` (and CE, CNE), `XCN[Practitioner]`,
`DTM[dateTime]` (and TS), `DT[date]`, `HD[Identifier]`, `NM[Quantity]`, `SN[Range]`-like
`SN` handling, `ED[Attachment]`, `PL[Location]` (as a display name).

Every function takes components already split and unescaped (`Segment.components`).
A TS/DTM without an offset is read in the sender's time zone; the result always carries an
offset when it has a time, as FHIR dateTime requires.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from adapters.hl7v2 import tables
from adapters.hl7v2.message import SUB

_TS = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,6})?\d*([+-]\d{4})?$")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)$")
UCUM = "http://unitsofmeasure.org"
CODE_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9CP": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10P": "http://www.cms.gov/Medicare/Coding/ICD10",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "RXN": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "C4": "http://www.ama-assn.org/go/cpt",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "UCUM": UCUM,
    "ANS+": UCUM,
    "NCIT": "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl",  # NCI Thesaurus (table 0396)
    "NCIM": "http://ncimeta.nci.nih.gov",  # NCI Metathesaurus
    "NIP001": "urn:oid:2.16.840.1.114222.4.5.274",  # CDC immunization information source
    "NUCC": "http://nucc.org/provider-taxonomy",
}
# UCUM units common in lab results, recognised when OBX-6 names no coding system
_UCUM_UNITS = frozenset(
    {
        "%",
        "/uL",
        "10*3/uL",
        "10*6/uL",
        "10*9/L",
        "10*12/L",
        "cm",
        "fL",
        "g",
        "g/dL",
        "g/L",
        "h",
        "IU/L",
        "[IU]/L",
        "kg",
        "kg/m2",
        "L",
        "m",
        "meq/L",
        "mg",
        "mg/dL",
        "mg/L",
        "min",
        "mL",
        "mL/min",
        "mm",
        "mm[Hg]",
        "mmol/L",
        "mol/L",
        "ng/mL",
        "nmol/L",
        "pg",
        "pg/mL",
        "s",
        "U/L",
        "ug/dL",
        "ug/L",
        "ug/mL",
        "umol/L",
        "Cel",
        "[degF]",
        "/min",
        "{beats}/min",
    }
)


def part(comps: list[str], n: int) -> str:
    """Component n (1-based) of `comps` (its first subcomponent), "" when absent."""
    return comps[n - 1].split(SUB, 1)[0] if n <= len(comps) else ""


def whole(comps: list[str], n: int) -> str:
    """Component n (1-based) of `comps` with all its subcomponents (read them with `sub`)."""
    return comps[n - 1] if n <= len(comps) else ""


def sub(value: str, n: int = 1) -> str:
    """Subcomponent n (1-based) of a component (`SUB`-joined by `components`)."""
    parts = value.split(SUB)
    return parts[n - 1] if n <= len(parts) else ""


def text(comps: list[str]) -> str:
    """Components read as the text they spell (FT, TX, free text): `^` between components,
    `&` between subcomponents, as the sender wrote them unescaped."""
    return "^".join(comps).replace(SUB, "&")


def clean(value: dict[str, Any]) -> dict[str, Any]:
    """`value` without empty members."""
    return {k: v for k, v in value.items() if v not in (None, "", [], {})}


# --- time -----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def date_time(value: str, zone: ZoneInfo) -> str | None:
    """DTM/TS (first component) as a FHIR dateTime; date-only values stay dates."""
    match = _TS.match(value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    if hour is None:
        return date(value)
    if day is None:
        return None
    local = f"{year}-{month}-{day}T{hour}:{minute or '00'}:{second or '00'}{fraction or ''}"
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute or 0),
            int(second or 0),
            tzinfo=zone,
        )
    except ValueError:
        return None
    if offset:
        if int(offset[1:3]) > 14 or int(offset[3:]) > 59:
            return None
        return f"{local}{offset[:3]}:{offset[3:]}"
    return local + _offset(moment)


def _offset(moment: datetime) -> str:
    delta = moment.utcoffset()
    minutes = int(delta.total_seconds() // 60) if delta else 0
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def date(value: str) -> str | None:
    """DT (or the date part of a TS) as a FHIR date."""
    match = _TS.match(value.strip())
    if not match:
        return None
    year, month, day = match.groups()[:3]
    try:
        datetime(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    return "-".join(p for p in (year, month, day) if p)


# --- identifiers ----------------------------------------------------------------------------


def authority_system(
    namespace: str, universal: str, kind: str, systems: dict[str, str] | Any
) -> str:
    """An Identifier.system for an assigning authority (HD): configured, OID, URI or urn:id."""
    for key in (namespace, universal):
        if key and key in systems:
            return systems[key]
    if universal and kind.upper() == "ISO":
        return f"urn:oid:{universal}"
    if universal and kind.upper() == "UUID":
        return f"urn:uuid:{universal.lower()}"
    if universal and re.match(r"(https?|urn):", universal):
        return universal
    name = namespace or universal
    return f"urn:id:{quote(name, safe='.-_')}" if name else ""


def hd_system(value: str, systems: Any) -> str:
    """System for an HD in one component (read with `whole`)."""
    return authority_system(sub(value, 1), sub(value, 2), sub(value, 3), systems)


def identifier(comps: list[str], systems: Any) -> dict[str, Any] | None:
    """CX -> Identifier (CX-1 value, CX-4 system, CX-5 type)."""
    value = part(comps, 1)
    if not value:
        return None
    out = {
        "type": code_concept(
            "IdentifierType", part(comps, 5), "http://terminology.hl7.org/CodeSystem/v2-0203"
        ),
        "system": hd_system(whole(comps, 4), systems),
        "value": value,
    }
    return clean(out)


def code_concept(table: str, code: str, fallback_system: str) -> dict[str, Any] | None:
    if not code:
        return None
    coding = tables.coding(table, code) or {"system": fallback_system, "code": code}
    return {"coding": [coding]}


# --- names, addresses, telecom --------------------------------------------------------------


def human_name(comps: list[str], family: int = 1) -> dict[str, Any] | None:
    """XPN -> HumanName (components from `family`: family, given, middle, suffix, prefix)."""
    f = family - 1
    given = [g for g in (part(comps, f + 2), part(comps, f + 3)) if g]
    use = tables.lookup("NameType", part(comps, f + 7)) if family == 1 else None
    out = {
        "use": use[0] if use else None,
        "family": sub(whole(comps, f + 1)),
        "given": given,
        "suffix": [s for s in (part(comps, f + 4),) if s],
        "prefix": [p for p in (part(comps, f + 5),) if p],
    }
    out = clean(out)
    return out if ("family" in out or "given" in out) else None


def address(comps: list[str]) -> dict[str, Any] | None:
    """XAD -> Address."""
    use = tables.lookup("AddressType[Use]", part(comps, 7))
    kind = tables.lookup("AddressType[Type]", part(comps, 7))
    out = clean(
        {
            "use": use[0] if use else None,
            "type": kind[0] if kind else None,
            "line": [v for v in (sub(whole(comps, 1)), part(comps, 2)) if v],
            "city": part(comps, 3),
            "state": part(comps, 4),
            "postalCode": part(comps, 5),
            "country": part(comps, 6),
            "district": part(comps, 9),
        }
    )
    return out if set(out) - {"use", "type"} else None


def contact_point(comps: list[str]) -> dict[str, Any] | None:
    """XTN -> ContactPoint (XTN-1 or XTN-4 email or XTN-5..7 number; XTN-2 use, XTN-3 kind)."""
    equipment = part(comps, 3)
    email = part(comps, 4)
    number = part(comps, 1) or _phone(comps)
    system = "email" if (equipment == "Internet" or part(comps, 2) == "NET") else "phone"
    use = tables.lookup("TelecommunicationUseCode", part(comps, 2))
    found = tables.lookup("TelecommunicationEquipmentType", equipment)
    out = {
        "system": system,
        "value": email if system == "email" and email else number,
        "use": use[0] if use else None,
    }
    if found and found[2].endswith("contact-point-system"):
        out["system"] = found[0]
    elif found and found[2].endswith("contact-point-use"):
        out["use"] = found[0]
    if system == "phone" and not number and email:
        out.update(system="email", value=email)
    return clean(out) if out.get("value") else None


def _phone(comps: list[str]) -> str:
    pieces = [
        part(comps, 5) and f"+{part(comps, 5)}",
        part(comps, 6) and f"({part(comps, 6)})",
        part(comps, 7),
        part(comps, 8) and f"ext. {part(comps, 8)}",
    ]
    return " ".join(p for p in pieces if p)


# --- codes ----------------------------------------------------------------------------------


def code_system(name: str) -> str | None:
    if not name:
        return None
    if name in CODE_SYSTEMS:
        return CODE_SYSTEMS[name]
    table = re.fullmatch(r"HL7?(\d{4})", name)
    if table:
        return f"http://terminology.hl7.org/CodeSystem/v2-{table.group(1)}"
    return f"urn:id:{quote(name, safe='.-_')}"


def codeable(comps: list[str], default_system: str | None = None) -> dict[str, Any] | None:
    """CWE/CE/CNE -> CodeableConcept (two codings; text from CWE-9 or CWE-2)."""
    codings = []
    for first in (1, 4, 10, 14):
        code = part(comps, first)
        if not code:
            continue
        system = code_system(part(comps, first + 2)) or (default_system if first == 1 else None)
        codings.append(clean({"system": system, "code": code, "display": part(comps, first + 1)}))
    text = part(comps, 9) or (part(comps, 2) if not codings else "")
    out = clean({"coding": codings, "text": text or None})
    return out or None


def coding(comps: list[str]) -> dict[str, Any] | None:
    concept = codeable(comps)
    return concept["coding"][0] if concept and concept.get("coding") else None


# --- people ---------------------------------------------------------------------------------


def practitioner(comps: list[str], systems: Any) -> dict[str, Any] | None:
    """XCN -> Practitioner (XCN-1 identifier with XCN-9 system, XCN-2.. name)."""
    ident = None
    if part(comps, 1):
        ident = clean(
            {
                "system": hd_system(whole(comps, 9), systems),
                "value": part(comps, 1),
                "type": code_concept(
                    "IdentifierType",
                    part(comps, 13),
                    "http://terminology.hl7.org/CodeSystem/v2-0203",
                ),
            }
        )
    name = human_name(comps[1:]) if len(comps) > 1 else None
    if ident is None and name is None:
        return None
    return clean(
        {
            "resourceType": "Practitioner",
            "identifier": [ident] if ident else [],
            "name": [name] if name else [],
        }
    )


def location_name(comps: list[str]) -> str:
    """PL -> a display: point of care, room, bed, facility, building, floor."""
    return " ".join(
        v
        for v in (
            sub(whole(comps, 4)),
            part(comps, 7),
            part(comps, 8),
            part(comps, 1),
            part(comps, 2),
            part(comps, 3),
        )
        if v
    )


# --- values ---------------------------------------------------------------------------------


def number(value: str) -> int | float | None:
    value = value.strip()
    if not _NUMBER.match(value):
        return None
    return float(value) if "." in value else int(value)


def quantity(value: str, unit: list[str]) -> dict[str, Any] | None:
    """NM with its OBX-6 unit -> Quantity (UCUM coded when the unit is UCUM)."""
    amount = number(value)
    if amount is None:
        return None
    out: dict[str, Any] = {"value": amount}
    code, text, system = part(unit, 1), part(unit, 2), part(unit, 3)
    if code:
        out["unit"] = text or code
        if system in ("UCUM", "ANS+") or (not system and code in _UCUM_UNITS):
            out.update(system=UCUM, code=code)
        elif system:
            out.update(system=code_system(system), code=code)
    return out
