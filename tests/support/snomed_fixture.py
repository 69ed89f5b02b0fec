"""A deterministic SNOMED CT RF2 snapshot of any size, for the importer tests and the benchmark.

`write_snapshot(folder, n)` writes the three Snapshot/Terminology files of an RF2 release (same
names, headers, tab separation and CRLF line ends as a real one) describing `n` concepts:
a balanced tree under concept 0 (`branching` children each), a second parent for every
`multi_parent_every`-th concept, inactive leaves (every `inactive_every`-th, with an inactive
is-a row), and an older duplicate row for every tenth is-a relationship, as a Full file has.
Identifiers are valid SCTIDs (partition and Verhoeff check digit). `write_snomed_fixture`
does the same with the defaults and returns only the concept ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

RELEASE = "20240201"
OLDER = "20020131"
CORE_MODULE = "900000000000207008"
PRIMITIVE = "900000000000074008"
IS_A = "116680003"
FSN = "900000000000003001"
SYNONYM = "900000000000013009"
INITIAL_CHARACTER_CASE_INSENSITIVE = "900000000000020002"
INFERRED = "900000000000011006"
EXISTENTIAL = "900000000000451002"

CONCEPT_HEADER = "id\teffectiveTime\tactive\tmoduleId\tdefinitionStatusId"
DESCRIPTION_HEADER = (
    "id\teffectiveTime\tactive\tmoduleId\tconceptId\tlanguageCode\ttypeId\tterm\tcaseSignificanceId"
)
RELATIONSHIP_HEADER = (
    "id\teffectiveTime\tactive\tmoduleId\tsourceId\tdestinationId\trelationshipGroup\ttypeId"
    "\tcharacteristicTypeId\tmodifierId"
)

_D = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
]
_P = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
]
_INV = [0, 4, 3, 2, 1, 5, 6, 7, 8, 9]


def verhoeff_digit(digits: str) -> str:
    """The Verhoeff check digit to append to `digits`."""
    check = 0
    for i, digit in enumerate(reversed(digits)):
        check = _D[check][_P[(i + 1) % 8][int(digit)]]
    return str(_INV[check])


def sctid(item: int, partition: str) -> str:
    """A short-format SCTID: item, partition ('00' concept, '01' description, '02' relationship)."""
    body = f"{item}{partition}"
    return body + verhoeff_digit(body)


@dataclass
class Snapshot:
    """What `write_snapshot` wrote: concept ids by index, and the expected active parents."""

    folder: Path
    concept_ids: list[str]
    parents: dict[str, list[str]] = field(default_factory=dict)
    inactive: set[str] = field(default_factory=set)


def write_snapshot(
    folder: Path,
    n: int = 10_000,
    *,
    branching: int = 8,
    multi_parent_every: int = 50,
    inactive_every: int = 97,
) -> Snapshot:
    """Write an `n`-concept RF2 snapshot under `folder` and say what it holds."""
    ids = [sctid(1_000_000 + i, "00") for i in range(n)]
    snapshot = Snapshot(folder, ids)
    first_leaf = (n - 2) // branching + 1
    for i in range(1, n):
        if i >= first_leaf and i % inactive_every == 0:
            snapshot.inactive.add(ids[i])
            continue
        parent = (i - 1) // branching
        if i % multi_parent_every == 0 and parent >= 1:
            snapshot.parents[ids[i]] = [ids[parent - 1], ids[parent]]
        else:
            snapshot.parents[ids[i]] = [ids[parent]]
    terminology = folder / "Snapshot" / "Terminology"
    terminology.mkdir(parents=True, exist_ok=True)
    _write(
        terminology / f"sct2_Concept_Snapshot_INT_{RELEASE}.txt",
        CONCEPT_HEADER,
        _concept_lines(snapshot),
    )
    _write(
        terminology / f"sct2_Description_Snapshot-en_INT_{RELEASE}.txt",
        DESCRIPTION_HEADER,
        _description_lines(snapshot),
    )
    _write(
        terminology / f"sct2_Relationship_Snapshot_INT_{RELEASE}.txt",
        RELATIONSHIP_HEADER,
        _relationship_lines(snapshot, branching),
    )
    return snapshot


def write_snomed_fixture(folder: Path, n: int = 10_000) -> list[str]:
    """Write the default `n`-concept snapshot under `folder`; its concept ids, root first.

    The last id is an active leaf whenever `n - 1` is not a multiple of 97.
    """
    return write_snapshot(folder, n).concept_ids


def _write(path: Path, header: str, lines) -> None:
    with path.open("w", encoding="utf-8", newline="") as file:
        file.write(header + "\r\n")
        file.writelines(line + "\r\n" for line in lines)


def _concept_lines(snapshot: Snapshot):
    for cid in snapshot.concept_ids:
        active = "0" if cid in snapshot.inactive else "1"
        yield "\t".join((cid, RELEASE, active, CORE_MODULE, PRIMITIVE))


def _description_lines(snapshot: Snapshot):
    for i, cid in enumerate(snapshot.concept_ids):
        for offset, (type_id, term) in enumerate(
            ((FSN, f"Generated concept {i} (finding)"), (SYNONYM, f"Generated concept {i}"))
        ):
            did = sctid(2 * (1_000_000 + i) + offset, "01")
            yield "\t".join(
                (
                    did,
                    RELEASE,
                    "1",
                    CORE_MODULE,
                    cid,
                    "en",
                    type_id,
                    term,
                    INITIAL_CHARACTER_CASE_INSENSITIVE,
                )
            )


def _relationship_lines(snapshot: Snapshot, branching: int):
    ids = snapshot.concept_ids
    item = 1_000_000
    for i in range(1, len(ids)):
        targets = snapshot.parents.get(ids[i]) or [ids[(i - 1) // branching]]
        active = "0" if ids[i] in snapshot.inactive else "1"
        for target in targets:
            item += 1
            rid = sctid(item, "02")
            row = (ids[i], target, "0", IS_A, INFERRED, EXISTENTIAL)
            if item % 10 == 0:
                yield "\t".join((rid, OLDER, "1", CORE_MODULE, *row))
            yield "\t".join((rid, RELEASE, active, CORE_MODULE, *row))
