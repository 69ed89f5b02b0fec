"""Importers that turn a terminology release into one FHIR R4 CodeSystem resource.

`import_loinc(path)` reads the LOINC table file (`LoincTable/Loinc.csv`);
`import_snomed(folder)` reads a SNOMED CT RF2 snapshot (concepts, English descriptions,
relationships). Both stream their input, call `progress(rows_read)` as they go, and return an
`ImportResult`: the CodeSystem as a plain JSON dict (content "complete"), the counts, and one
`RowError` per malformed row, which is skipped rather than ending the import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ImportResult", "ProgressCallback", "RowError", "import_loinc", "import_snomed"]

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


# The importers need the types above, so they are imported after them.
from terminology.importers.loinc import import_loinc  # noqa: E402
from terminology.importers.snomed import import_snomed  # noqa: E402
