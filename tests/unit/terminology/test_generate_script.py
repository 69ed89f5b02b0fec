"""scripts/generate_r4_terminology.py: which resources it keeps and what prose it drops."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "generate_r4_terminology.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_r4_terminology", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _package(*resources: dict[str, Any]) -> bytes:
    files = {"package/package.json": {"name": "hl7.fhir.r4.core", "version": "4.0.1"}}
    files.update({f"package/{r['resourceType']}-{r['id']}.json": r for r in resources})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_collect_keeps_terminology_and_drops_prose() -> None:
    code_system = {
        "resourceType": "CodeSystem",
        "id": "b",
        "url": "http://x/b",
        "text": {"div": "..."},
        "description": "prose",
        "copyright": "c",
        "contact": [],
        "purpose": "p",
        "extension": [{"url": "u"}],
        "concept": [{"code": "x", "definition": "kept", "designation": [{"value": "X"}]}],
    }
    other = {"resourceType": "StructureDefinition", "id": "sd"}
    value_set = {"resourceType": "ValueSet", "id": "a", "url": "http://x/a"}
    content = _script().collect(_package(code_system, other, value_set, {**value_set, "id": "0"}))
    assert [r["id"] for r in content["ValueSet"]] == ["0", "a"]
    assert content["ConceptMap"] == []
    assert content["CodeSystem"] == [
        {
            "resourceType": "CodeSystem",
            "id": "b",
            "url": "http://x/b",
            "concept": [{"code": "x", "definition": "kept", "designation": [{"value": "X"}]}],
        }
    ]
