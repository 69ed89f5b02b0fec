"""The shape DESIGN.md promises, checked.

- The import contracts in pyproject.toml hold (lint-imports): the layers (cli, api,
  assembly, plug-ins, interactions, context, storage, search/model), the two storage
  engines independent of each other, and only fhir_server.api importing a web framework.
- ruff is clean and the code is as `ruff format` writes it; mypy --strict (configured in
  pyproject.toml) passes.
- Only the composition root (fhir_server/assembly.py) and the commands (fhir_server/cli/)
  construct a storage engine or the FHIR service: every other module is handed one.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("fhir_server", "adapters", "terminology", "cds_hooks", "conformance")
WIRING = ("fhir_server/assembly.py", "fhir_server/cli/")
# module -> names whose call builds storage or the service
CONSTRUCTORS = {
    "fhir_server.interactions.service": ("FhirService",),
    "fhir_server.storage.sqlite": ("SQLiteStorage",),
    "fhir_server.storage.mongodb": ("MongoStorage",),
    "fhir_server.assembly": ("make_storage", "build_service"),
}
NAMES = frozenset(name for names in CONSTRUCTORS.values() for name in names)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run([str(ruff), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_holds() -> None:
    """The code is as `ruff format` writes it (`make lint` checks the same)."""
    ruff = Path(sys.executable).parent / "ruff"
    result = subprocess.run(
        [str(ruff), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(("module", "names"), list(CONSTRUCTORS.items()))
def test_the_constructors_the_scan_looks_for_exist(module: str, names: tuple[str, ...]) -> None:
    """A renamed class or function would make the scan below look for nothing."""
    loaded = importlib.import_module(module)
    assert all(callable(getattr(loaded, name, None)) for name in names)


def test_only_the_assembly_and_the_cli_construct_storage_or_the_service() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name}(...)"
        for path in _shipped_modules()
        if not _is_wiring(path)
        for line, name in _constructions(path)
    ]
    assert found == []


def _shipped_modules() -> Iterator[Path]:
    for package in SHIPPED:
        yield from sorted((ROOT / package).rglob("*.py"))


def _is_wiring(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return any(relative == w or (w.endswith("/") and relative.startswith(w)) for w in WIRING)


def _constructions(path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) of every call of a constructor, or of one of its class methods
    (`MongoStorage.from_url(...)`). Asking the assembly (`open_service`) is not building."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = _called(node.func)
        if name in NAMES:
            yield node.lineno, name


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        if func.attr in NAMES:
            return func.attr
        return _called(func.value)  # SomeStorage.from_url
    return None


def test_the_scan_finds_a_construction(tmp_path: Path) -> None:
    """The scan itself works: each way of building is found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "svc = FhirService(store)\nstore = MongoStorage.from_url(url)\n"
        "s = sqlite.SQLiteStorage(path)\nopen_service(settings)\n"
    )
    assert list(_constructions(sample)) == [
        (1, "FhirService"),
        (2, "MongoStorage"),
        (3, "SQLiteStorage"),
    ]


def test_mypy_is_clean() -> None:
    """Every package type-checks in strict mode (configured in pyproject.toml)."""
    mypy = Path(sys.executable).parent / "mypy"
    result = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
