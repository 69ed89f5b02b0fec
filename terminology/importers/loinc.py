"""The LOINC table file (`LoincTable/Loinc.csv`) as one FHIR R4 CodeSystem, `http://loinc.org`.

File format: LOINC Users' Guide, Appendix A (a comma-separated file, a header row, every text
field in double quotes). Since 2.69 the header is `LOINC_TABLE_COLUMNS`; columns are found by
name, so older or newer layouts import as long as LOINC_NUM and LONG_COMMON_NAME are there.

The resource follows the official LOINC CodeSystem (https://github.com/loinc/loinc-fhir-codesystem,
loinc.xml): "In the LOINC code system resource, the display element = LONG_COMMON_NAME", and
properties carry the LOINC table's column names as codes with the URIs
`http://loinc.org/property/<code>`. Two departures, both because the table alone lacks the data:

- loinc.xml types the six axes and CLASS as `Coding` holding LOINC Part codes (LP...); those
  come from the Part file (LoincPartLink_Primary.csv), so here they are `string` part names.
- No Multiaxial Hierarchy, answer lists or Part concepts: the table defines only the terms.

Term status: loinc.xml says "codes with STATUS=DEPRECATED are considered inactive". Besides the
STATUS property (the LOINC value as is), DEPRECATED and DISCOURAGED terms get the FHIR `status`
property (http://hl7.org/fhir/concept-properties): DEPRECATED is `retired` and `inactive` true;
DISCOURAGED is `deprecated` ("can still be used, but their use is discouraged").
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from terminology.importers import (
    ImportResult,
    ProgressCallback,
    RowError,
    complete_code_system,
)

if TYPE_CHECKING:
    from _csv import Reader  # what csv.reader returns

LOINC_URL = "http://loinc.org"
LOINC_OID = "2.16.840.1.113883.6.1"
SYNONYM = {"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"}

LOINC_TABLE_COLUMNS = (
    "LOINC_NUM",
    "COMPONENT",
    "PROPERTY",
    "TIME_ASPCT",
    "SYSTEM",
    "SCALE_TYP",
    "METHOD_TYP",
    "CLASS",
    "VersionLastChanged",
    "CHNG_TYPE",
    "DefinitionDescription",
    "STATUS",
    "CONSUMER_NAME",
    "CLASSTYPE",
    "FORMULA",
    "EXMPL_ANSWERS",
    "SURVEY_QUEST_TEXT",
    "SURVEY_QUEST_SRC",
    "UNITSREQUIRED",
    "RELATEDNAMES2",
    "SHORTNAME",
    "ORDER_OBS",
    "HL7_FIELD_SUBFIELD_ID",
    "EXTERNAL_COPYRIGHT_NOTICE",
    "EXAMPLE_UNITS",
    "LONG_COMMON_NAME",
    "EXAMPLE_UCUM_UNITS",
    "STATUS_REASON",
    "STATUS_TEXT",
    "CHANGE_REASON_PUBLIC",
    "COMMON_TEST_RANK",
    "COMMON_ORDER_RANK",
    "COMMON_SI_TEST_RANK",
    "HL7_ATTACHMENT_STRUCTURE",
    "EXTERNAL_COPYRIGHT_LINK",
    "PanelType",
    "AskAtOrderEntry",
    "AssociatedObservations",
    "VersionFirstReleased",
    "ValidHL7AttachmentRequest",
    "DisplayName",
)
"""The Loinc.csv header of the 2.7x releases (unchanged since 2.69), in file order."""

# (code = LOINC column, description) of the string properties copied from each row.
STRING_PROPERTIES = (
    ("COMPONENT", "First major axis-component or analyte (part name)"),
    ("PROPERTY", "Second major axis-property observed (part name)"),
    ("TIME_ASPCT", "Third major axis-timing of the measurement (part name)"),
    ("SYSTEM", "Fourth major axis-type of specimen or system (part name)"),
    ("SCALE_TYP", "Fifth major axis-scale of measurement (part name)"),
    ("METHOD_TYP", "Sixth major axis-method of measurement (part name)"),
    ("CLASS", "An arbitrary classification of terms for grouping related observations"),
    ("CLASSTYPE", "1=Laboratory class; 2=Clinical class; 3=Claims attachments; 4=Surveys"),
    ("STATUS", "Status of the term: ACTIVE, TRIAL, DISCOURAGED or DEPRECATED"),
    ("VersionLastChanged", "The LOINC version in which the record last changed"),
    ("ORDER_OBS", "Intended use of the term: Order, Observation, Both or Subset"),
    ("EXAMPLE_UCUM_UNITS", "Example units of measure for this term, as UCUM units"),
)
REQUIRED_COLUMNS = ("LOINC_NUM", "LONG_COMMON_NAME")
FHIR_STATUS = {"DEPRECATED": "retired", "DISCOURAGED": "deprecated"}
PROPERTY_DECLARATIONS = [
    *(
        {"code": code, "uri": f"{LOINC_URL}/property/{code}", "description": text, "type": "string"}
        for code, text in STRING_PROPERTIES
    ),
    {
        "code": "status",
        "uri": "http://hl7.org/fhir/concept-properties#status",
        "type": "code",
        "description": "retired for DEPRECATED terms, deprecated for DISCOURAGED ones",
    },
    {
        "code": "inactive",
        "uri": "http://hl7.org/fhir/concept-properties#inactive",
        "type": "boolean",
        "description": "True for DEPRECATED terms",
    },
]


class _Layout:
    """Where each column this importer reads sits in a row, from the header."""

    def __init__(self, header: list[str]) -> None:
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"not a LOINC table: no {', '.join(missing)} column in the header")
        index = {name: i for i, name in enumerate(header)}
        self.width = len(header)
        self.code = index["LOINC_NUM"]
        self.display = index["LONG_COMMON_NAME"]
        self.shortname = index.get("SHORTNAME")
        self.status = index.get("STATUS")
        self.last_changed = index.get("VersionLastChanged")
        self.properties = [(code, index[code]) for code, _ in STRING_PROPERTIES if code in index]


def import_loinc(
    path: str | PathLike[str],
    *,
    version: str | None = None,
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> ImportResult:
    """Import `Loinc.csv` at `path` as a complete CodeSystem.

    `version` defaults to the highest VersionLastChanged in the file (the release the table
    comes from). Raises `ValueError` when the header lacks LOINC_NUM or LONG_COMMON_NAME;
    a bad row (wrong column count, no LOINC_NUM, a repeated code) becomes a `RowError`.
    """
    path = Path(path)
    errors: list[RowError] = []
    concepts: list[dict[str, Any]] = []
    seen: set[str] = set()
    latest = ""
    rows = 0
    with path.open(encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        layout = _Layout(next(reader, []))
        for line, row in _rows(reader, path.name, errors):
            rows += 1
            if progress is not None and rows % progress_every == 0:
                progress(rows)
            problem = _check(row, layout, seen)
            if problem:
                errors.append(RowError(path.name, line, problem))
                continue
            seen.add(row[layout.code])
            concepts.append(_concept(row, layout))
            if layout.last_changed is not None:
                latest = max(latest, row[layout.last_changed], key=_version_key)
    if progress is not None:
        progress(rows)
    code_system = _code_system(version or latest or None, concepts)
    return ImportResult(code_system, rows=rows, concepts=len(concepts), errors=errors)


def _rows(reader: Reader, file: str, errors: list[RowError]) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, fields) per non-blank row; CSV syntax errors become errors."""
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(RowError(file, line, f"unreadable CSV: {exc}"))
            continue
        if row:
            yield line, row


def _check(row: list[str], layout: _Layout, seen: set[str]) -> str | None:
    """Why `row` cannot become a concept, or None."""
    if len(row) != layout.width:
        return f"expected {layout.width} columns, found {len(row)}"
    code = row[layout.code].strip()
    if not code:
        return "no LOINC_NUM"
    if code in seen:
        return f"LOINC_NUM {code} repeats an earlier row"
    if not row[layout.display].strip():
        return f"LOINC_NUM {code} has no LONG_COMMON_NAME"
    return None


def _concept(row: list[str], layout: _Layout) -> dict[str, Any]:
    concept: dict[str, Any] = {"code": row[layout.code].strip(), "display": row[layout.display]}
    if layout.shortname is not None and row[layout.shortname]:
        concept["designation"] = [
            {"language": "en-US", "use": dict(SYNONYM), "value": row[layout.shortname]}
        ]
    properties: list[dict[str, Any]] = [
        {"code": code, "valueString": row[i]} for code, i in layout.properties if row[i]
    ]
    status = row[layout.status] if layout.status is not None else ""
    if status in FHIR_STATUS:
        properties.append({"code": "status", "valueCode": FHIR_STATUS[status]})
    if status == "DEPRECATED":
        properties.append({"code": "inactive", "valueBoolean": True})
    if properties:
        concept["property"] = properties
    return concept


def _version_key(version: str) -> tuple[int, ...]:
    """'2.77' -> (2, 77); the letters of early versions ('1.0o') are ignored."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _code_system(version: str | None, concepts: list[dict[str, Any]]) -> dict[str, Any]:
    about = {
        "publisher": "Regenstrief Institute, Inc.",
        "copyright": "This material contains content from LOINC (http://loinc.org). LOINC is "
        "copyright Regenstrief Institute, Inc. and the Logical Observation Identifiers Names "
        "and Codes (LOINC) Committee and is available at no cost under the license at "
        "http://loinc.org/license.",
        "caseSensitive": False,
    }
    return complete_code_system(
        LOINC_URL,
        LOINC_OID,
        version,
        ("LOINC", "LOINC Code System"),
        about,
        PROPERTY_DECLARATIONS,
        concepts,
    )
