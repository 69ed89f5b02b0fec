"""A SNOMED CT RF2 snapshot as one FHIR R4 CodeSystem, `http://snomed.info/sct`.

Input: the Snapshot/Terminology files of an RF2 release (SNOMED CT Release File Specification,
https://docs.snomed.org/snomed-ct-specifications/release-file-specification): UTF-8,
tab-separated, a header line of lowerCamelCase column names, CRLF line ends.

- `sct2_Concept_Snapshot_*.txt`: `CONCEPT_COLUMNS`
- `sct2_Description_Snapshot-en_*.txt`: `DESCRIPTION_COLUMNS`
- `sct2_Relationship_Snapshot_*.txt`: `RELATIONSHIP_COLUMNS` (the inferred relationships)

Output follows "Using SNOMED CT with HL7 Standards" (https://terminology.hl7.org/SNOMEDCT.html):
code = conceptId; version `http://snomed.info/sct/<module>/version/<YYYYMMDD>`; the `parent`
property from active is-a (116680003) relationships, so a concept may have several parents;
`inactive` true for inactive concepts; designations for the fully specified name and the
synonyms, each with its language and the description type as `use`.

Which row counts: when an id appears on several rows (a Full file concatenated with a
Snapshot, say), the one with the latest effectiveTime wins, and only then is its `active`
flag read, so a description or relationship inactivated later is dropped.

Display: the preferred term needs a language reference set, which this importer does not
read; it takes the first active synonym in file order, else the fully specified name without
its semantic tag ("Diabetes mellitus (disorder)" -> "Diabetes mellitus").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from terminology.importers import (
    ImportResult,
    ProgressCallback,
    RowError,
    complete_code_system,
)

SNOMED_URL = "http://snomed.info/sct"
SNOMED_OID = "2.16.840.1.113883.6.96"
INTERNATIONAL_EDITION = "900000000000207008"
IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
DESIGNATION_USE = {FSN: "Fully specified name", SYNONYM: "Synonym"}

CONCEPT_COLUMNS = ("id", "effectiveTime", "active", "moduleId", "definitionStatusId")
DESCRIPTION_COLUMNS = (
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "conceptId",
    "languageCode",
    "typeId",
    "term",
    "caseSignificanceId",
)
RELATIONSHIP_COLUMNS = (
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "sourceId",
    "destinationId",
    "relationshipGroup",
    "typeId",
    "characteristicTypeId",
    "modifierId",
)
CONCEPT_FILE = "sct2_Concept_Snapshot_*.txt"
DESCRIPTION_FILE = "sct2_Description_Snapshot-en_*.txt"
RELATIONSHIP_FILE = "sct2_Relationship_Snapshot_*.txt"

PROPERTY_DECLARATIONS = [
    {
        "code": "parent",
        "uri": "http://hl7.org/fhir/concept-properties#parent",
        "type": "code",
        "description": "A direct supertype: the destination of an active is-a relationship",
    },
    {
        "code": "inactive",
        "uri": "http://hl7.org/fhir/concept-properties#inactive",
        "type": "boolean",
        "description": "True when the concept is inactive",
    },
]
_SEMANTIC_TAG = re.compile(r"\s+\([^()]*\)$")


@dataclass
class _Reading:
    """What the three files have told us so far, keyed by component id, latest row only."""

    progress: ProgressCallback | None
    progress_every: int
    rows: int = 0
    latest_time: str = ""
    errors: list[RowError] = field(default_factory=list)
    # id -> (effectiveTime, active)
    concepts: dict[str, tuple[str, str]] = field(default_factory=dict)
    # id -> (effectiveTime, active, conceptId, languageCode, typeId, term, file, line)
    descriptions: dict[str, tuple[str, str, str, str, str, str, str, int]] = field(
        default_factory=dict
    )
    # id -> (effectiveTime, active, sourceId, destinationId, file, line); is-a rows only
    is_a: dict[str, tuple[str, str, str, str, str, int]] = field(default_factory=dict)

    def tick(self) -> None:
        self.rows += 1
        if self.progress is not None and self.rows % self.progress_every == 0:
            self.progress(self.rows)


def import_snomed(
    folder: str | PathLike[str],
    *,
    version: str | None = None,
    module_id: str = INTERNATIONAL_EDITION,
    progress: ProgressCallback | None = None,
    progress_every: int = 10_000,
) -> ImportResult:
    """Import the RF2 snapshot under `folder` (searched recursively) as a complete CodeSystem.

    `version` is a version URI, or a YYYYMMDD date placed in one with `module_id`; it defaults
    to the latest effectiveTime read. Raises `ValueError` when a file is missing, found more
    than once, or has another header; a malformed line becomes a `RowError` (file:line).
    """
    folder = Path(folder)
    reading = _Reading(progress, progress_every)
    _read_concepts(_find(folder, CONCEPT_FILE), reading)
    _read_descriptions(_find(folder, DESCRIPTION_FILE), reading)
    _read_relationships(_find(folder, RELATIONSHIP_FILE), reading)
    if progress is not None:
        progress(reading.rows)
    concepts = _build_concepts(reading)
    version_uri = _version_uri(version or reading.latest_time, module_id)
    return ImportResult(
        _code_system(version_uri, concepts),
        rows=reading.rows,
        concepts=len(concepts),
        errors=reading.errors,
    )


def _find(folder: Path, pattern: str) -> Path:
    found = sorted(folder.rglob(pattern))
    if len(found) != 1:
        what = "no file" if not found else f"{len(found)} files"
        raise ValueError(f"{what} matching {pattern} under {folder}")
    return found[0]


def _rows(
    path: Path, columns: tuple[str, ...], reading: _Reading
) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, fields) for each well-formed line of an RF2 file."""
    numeric = [i for i, name in enumerate(columns) if name not in ("term", "languageCode")]
    with path.open(encoding="utf-8", newline="") as file:
        header = tuple(file.readline().rstrip("\r\n").split("\t"))
        if header != columns:
            raise ValueError(f"{path.name}: header is not {' '.join(columns)}")
        for line, text in enumerate(file, start=2):
            fields = text.rstrip("\r\n").split("\t")
            if fields == [""]:
                continue
            reading.tick()
            problem = _check(fields, columns, numeric)
            if problem:
                reading.errors.append(RowError(path.name, line, problem))
                continue
            if fields[1] > reading.latest_time:
                reading.latest_time = fields[1]
            yield line, fields


def _check(fields: list[str], columns: tuple[str, ...], numeric: list[int]) -> str | None:
    """Why a line is malformed, or None."""
    if len(fields) != len(columns):
        return f"expected {len(columns)} tab-separated fields, found {len(fields)}"
    for i in numeric:
        if not fields[i].isdigit():
            return f"{columns[i]} is not a number: {fields[i]!r}"
    if len(fields[1]) != 8:
        return f"effectiveTime is not YYYYMMDD: {fields[1]!r}"
    if fields[2] not in ("0", "1"):
        return f"active is not 0 or 1: {fields[2]!r}"
    return None


def _is_newer(known: tuple[Any, ...] | None, effective_time: str) -> bool:
    return known is None or effective_time >= known[0]


def _read_concepts(path: Path, reading: _Reading) -> None:
    concepts = reading.concepts
    for _, (cid, time, active, *_rest) in _rows(path, CONCEPT_COLUMNS, reading):
        if _is_newer(concepts.get(cid), time):
            concepts[cid] = (time, active)


def _read_descriptions(path: Path, reading: _Reading) -> None:
    descriptions, name = reading.descriptions, path.name
    for line, fields in _rows(path, DESCRIPTION_COLUMNS, reading):
        did, time, active, _, concept, language, type_id, term, _ = fields
        if _is_newer(descriptions.get(did), time):
            descriptions[did] = (time, active, concept, language, type_id, term, name, line)


def _read_relationships(path: Path, reading: _Reading) -> None:
    # A relationship's typeId never changes under the same id, so other types are dropped here.
    is_a, name = reading.is_a, path.name
    for line, fields in _rows(path, RELATIONSHIP_COLUMNS, reading):
        if fields[7] == IS_A and _is_newer(is_a.get(fields[0]), fields[1]):
            is_a[fields[0]] = (fields[1], fields[2], fields[4], fields[5], name, line)


@dataclass
class _Names:
    """A concept's active descriptions: its FSN, its synonyms, all as designations."""

    fsn: str | None = None
    synonyms: list[str] = field(default_factory=list)
    designations: list[dict[str, Any]] = field(default_factory=list)

    def display(self) -> str | None:
        if self.synonyms:
            return self.synonyms[0]
        return _SEMANTIC_TAG.sub("", self.fsn) if self.fsn else None


def _build_concepts(reading: _Reading) -> list[dict[str, Any]]:
    known = reading.concepts
    names = _names(reading, known)
    parents = _parents(reading, known)
    concepts = []
    for code, (_, active) in known.items():
        concept: dict[str, Any] = {"code": code}
        name = names.get(code) or _Names()
        if display := name.display():
            concept["display"] = display
        if name.designations:
            concept["designation"] = name.designations
        properties: list[dict[str, Any]] = [
            {"code": "parent", "valueCode": parent}
            for parent in sorted(parents.get(code, ()), key=int)
        ]
        if active == "0":
            properties.append({"code": "inactive", "valueBoolean": True})
        if properties:
            concept["property"] = properties
        concepts.append(concept)
    return concepts


def _names(reading: _Reading, known: dict[str, tuple[str, str]]) -> dict[str, _Names]:
    """conceptId -> its names, from the active FSN and synonym descriptions in file order."""
    names: dict[str, _Names] = {}
    for _, active, concept, language, type_id, term, file, line in reading.descriptions.values():
        if active != "1" or type_id not in DESIGNATION_USE:
            continue
        if concept not in known:
            reading.errors.append(RowError(file, line, f"conceptId {concept} is not a concept"))
            continue
        name = names.setdefault(concept, _Names())
        if type_id == FSN:
            name.fsn = name.fsn or term
        else:
            name.synonyms.append(term)
        use = {"system": SNOMED_URL, "code": type_id, "display": DESIGNATION_USE[type_id]}
        name.designations.append({"language": language, "use": use, "value": term})
    return names


def _parents(reading: _Reading, known: dict[str, tuple[str, str]]) -> dict[str, set[str]]:
    """conceptId -> the destinations of its active is-a relationships."""
    parents: dict[str, set[str]] = {}
    for _, active, source, destination, file, line in reading.is_a.values():
        if active != "1":
            continue
        missing = next((c for c in (source, destination) if c not in known), None)
        if missing is not None:
            reading.errors.append(RowError(file, line, f"is-a to or from {missing}, not a concept"))
            continue
        parents.setdefault(source, set()).add(destination)
    return parents


def _version_uri(version: str, module_id: str) -> str | None:
    if not version:
        return None
    if len(version) == 8 and version.isdigit():
        return f"{SNOMED_URL}/{module_id}/version/{version}"
    return version


def _code_system(version: str | None, concepts: list[dict[str, Any]]) -> dict[str, Any]:
    about = {
        "publisher": "SNOMED International",
        "caseSensitive": False,
        "hierarchyMeaning": "is-a",
        "compositional": True,
    }
    return complete_code_system(
        SNOMED_URL,
        SNOMED_OID,
        version,
        ("SNOMED_CT", "SNOMED CT"),
        about,
        PROPERTY_DECLARATIONS,
        concepts,
    )
