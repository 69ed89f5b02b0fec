"""Derive the HL7 v2 table maps the v2 adapter uses from the HL7 v2-to-FHIR IG spreadsheets.

Usage: python scripts/generate_hl7v2_maps.py MAPPINGS_DIR

MAPPINGS_DIR is the `mappings/` folder of the HL7 v2-to-FHIR Implementation Guide's CSV export
(repository HL7/v2-to-fhir, package `hl7.fhir.uv.v2mappings` 1.0.0, Apache-2.0). The script
writes `adapters/hl7v2/data/maps.json` (sorted keys, no whitespace), which the adapter reads at
import; the adapter never reads the spreadsheets themselves.

- `codes`: map name -> v2 code -> [FHIR code, display, system], one entry per concept map named
  in `CONCEPT_MAPS` (the map name is the spreadsheet's, e.g. "AdministrativeSex" from
  `HL7 Concept Map_ AdministrativeSex - Sheet1.csv`). Rows whose FHIR code is empty (the IG
  maps them to nothing) are left out.
- `structures`: "TYPE^EVENT" -> message structure (e.g. "ADT^A04" -> "ADT_A01"), from the
  MessageStructure map (v2 table 0354, whose text lists the events of each structure).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent.parent / "adapters" / "hl7v2" / "data" / "maps.json"
CONCEPT_MAPS = (
    "AdministrativeSex",
    "MaritalStatus",
    "PatientClass[EncounterClass]",
    "PatientClass[EncounterStatus]",
    "Event[EncounterStatus]",
    "InterpretationCodes",
    "ObservationResultStatusCodesInterpretation",
    "ResultStatus[Non-Queries]",
    "Relationship",
    "ContactRole",
    "NameType",
    "AddressType[Use]",
    "AddressType[Type]",
    "TelecommunicationUseCode",
    "TelecommunicationEquipmentType",
    "AllergenType[AllergyIntoleranceCategory]",
    "AllergySeverity[AllergyIntolerance.criticality]",
    "AllergySeverity[AllergyIntolerance.reaction.severity]",
    "DiagnosisType",
    "OrderControlCode[ServiceRequest.status]",
    "OrderStatus",
    "CompletionStatus",
    "FillerStatusCodes[Appointment]",
    "YesNoIndicator",
    "IdentifierType",
    "DocumentConfidentialityStatus",
)
_CODE, _FHIR_CODE, _FHIR_ALT_DISPLAY, _FHIR_DISPLAY, _FHIR_SYSTEM = 0, 6, 7, 8, 9


def concept_map(path: Path) -> dict[str, list[str]]:
    """v2 code -> [code, display, system] from one concept-map spreadsheet."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[2:]
    out: dict[str, list[str]] = {}
    for row in rows:
        row = row + [""] * (10 - len(row))
        code, fhir = row[_CODE].strip(), row[_FHIR_CODE].strip()
        if not code or not fhir or code in out:
            continue
        display = row[_FHIR_DISPLAY].strip() or row[_FHIR_ALT_DISPLAY].strip()
        system = row[_FHIR_SYSTEM].strip()
        if display.startswith("http") and not system:  # a sheet with the system one column left
            display, system = "", display
        out[code] = [fhir, display, system]
    return out


def structures(path: Path) -> dict[str, str]:
    """ "TYPE^EVENT" -> structure, from the events each structure of table 0354 lists."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))[2:]
    out: dict[str, str] = {}
    for row in rows:
        if len(row) < 2 or "_" not in row[0]:
            continue
        structure = row[0].strip()
        kind = structure.split("_")[0]
        for event in re.findall(r"\b[A-Z]\d{2}\b", row[1]):
            out.setdefault(f"{kind}^{event}", structure)
    return out


def build(mappings: Path) -> dict[str, Any]:
    folder = mappings / "codesystems"
    codes = {
        name: concept_map(folder / f"HL7 Concept Map_ {name} - Sheet1.csv") for name in CONCEPT_MAPS
    }
    table = structures(folder / "HL7 Concept Map_ MessageStructure - Sheet1.csv")
    return {"codes": codes, "structures": table}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    data = build(Path(argv[1]))
    OUT.write_text(json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    print(f"wrote {OUT} ({len(data['codes'])} maps, {len(data['structures'])} structures)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
