"""Importers that turn a terminology release into one FHIR R4 CodeSystem resource.

`import_loinc(path)` reads the LOINC table file (`LoincTable/Loinc.csv`);
`import_snomed(folder)` reads a SNOMED CT RF2 snapshot (concepts, English descriptions,
relationships). Both stream their input, call `progress(rows_read)` as they go, and return an
`ImportResult`: the CodeSystem as a plain JSON dict (content "complete"), the counts, and one
`RowError` per malformed row, which is skipped rather than ending the import. The part of
the CodeSystem that does not depend on the terminology is `complete_code_system`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ImportResult",
    "ProgressCallback",
    "RowError",
    "complete_code_system",
    "import_loinc",
    "import_snomed",
]

ProgressCallback = Callable[[int], None]
"""Called with the number of data rows read so far, every `progress_every` rows and at the end."""


@dataclass(frozen=True, slots=True)
class RowError:
    """A row the importer skipped: the file's name, its 1-based line number, and why."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass(slots=True)
class ImportResult:
    """What an import produced: the CodeSystem dict, how many rows and concepts, and the errors."""

    code_system: dict[str, Any]
    rows: int
    concepts: int
    errors: list[RowError] = field(default_factory=list)


def complete_code_system(
    url: str,
    oid: str,
    version: str | None,
    names: tuple[str, str],
    about: Mapping[str, Any],
    properties: Sequence[Mapping[str, str]],
    concepts: list[dict[str, Any]],
) -> dict[str, Any]:
    """An imported release as a CodeSystem, elements in FHIR order: its canonical `url`, its
    `oid` as identifier, its `version` (when known), `names` (name, title), active and not
    experimental, `about` (publisher, copyright, hierarchy...), every concept (content
    "complete") and the declarations of the `properties` they use."""
    code_system: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "url": url,
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{oid}"}],
    }
    if version:
        code_system["version"] = version
    return code_system | {
        "name": names[0],
        "title": names[1],
        "status": "active",
        "experimental": False,
        **about,
        "content": "complete",
        "count": len(concepts),
        "property": [dict(declaration) for declaration in properties],
        "concept": concepts,
    }


# The importers need the types above, so they are imported after them.
from terminology.importers.loinc import import_loinc  # noqa: E402
from terminology.importers.snomed import import_snomed  # noqa: E402
