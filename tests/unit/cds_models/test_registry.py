"""Adding a model package folder adds a working service, with no code change; a package that
cannot be used stops the start with a message naming it."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cds_hooks.models import SHIPPED, ManifestError, services
from cds_hooks.models.training import export
from cds_hooks.registry import collect
from fhir_server.settings import Settings
from tests.unit.cds_models.fhir import bundle, call, observation, patient

LOINC = "http://loinc.org"


def tiny_package(root: Path, name: str = "tiny-risk") -> Path:
    """A logistic regression over age and HDL, trained on made-up data, as a package."""
    rng = np.random.default_rng(7)
    rows = np.column_stack([rng.uniform(30, 80, 200), rng.uniform(20, 90, 200)])
    labels = (rows[:, 0] - rows[:, 1] > 10).astype(int)
    model = LogisticRegression().fit(rows.astype(np.float32), labels)
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(export(model, 2))
    manifest = {
        "id": name,
        "hook": "patient-view",
        "title": "Tiny risk",
        "description": "A test model.",
        "model": {"opset": 17, "output": "probabilities", "column": 1},
        "inputs": [
            {"name": "age", "source": "patient-age"},
            {"name": "hdl", "source": "observation", "code": f"{LOINC}|2085-9", "unit": "mg/dL"},
        ],
        "bands": [
            {"below": 0.5, "indicator": "info", "summary": "Tiny risk low ({value:.2f})"},
            {"indicator": "warning", "summary": "Tiny risk high ({value:.2f})"},
        ],
        "link": {"label": "Risk app", "url": "https://app.example/launch", "type": "smart"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "MODEL_CARD.md").write_text("# Tiny risk\n\nNot for clinical use.\n")
    return folder


def test_a_package_folder_becomes_a_service_in_discovery(tmp_path: Path) -> None:
    tiny_package(tmp_path / "more")
    settings = Settings(cds_model_dirs=str(tmp_path / "more"))
    found = collect(settings, providers=(services,))
    listed = {s["id"]: s for s in found.discovery()["services"]}
    assert set(listed) == {
        "diabetes-progression",
        "breast-cancer-fna-svm",
        "breast-cancer-fna-rf",
        "tiny-risk",
    }
    assert listed["tiny-risk"] == {
        "hook": "patient-view",
        "title": "Tiny risk",
        "description": "A test model.",
        "id": "tiny-risk",
        "prefetch": {
            "patient": "Patient/{{context.patientId}}",
            "hdl": "Observation?patient={{context.patientId}}&code=http://loinc.org|2085-9"
            "&_sort=-date&_count=10",
        },
    }
    service = found.get("tiny-risk")
    assert service is not None
    older = {
        "patient": patient("1950-01-01"),
        "hdl": bundle(observation(f"{LOINC}|2085-9", 30, "mg/dL")),
    }
    card = service.evaluate(call(older)).cards[0].to_json()
    assert card["summary"].startswith("Tiny risk high")
    assert card["links"] == [
        {"label": "Risk app", "url": "https://app.example/launch", "type": "smart"}
    ]
    younger = {
        "patient": patient("1990-01-01"),
        "hdl": bundle(observation(f"{LOINC}|2085-9", 80, "mg/dL")),
    }
    assert service.evaluate(call(younger)).cards[0].summary.startswith("Tiny risk low")


def test_without_the_setting_only_the_shipped_packages_are_served() -> None:
    assert [s.definition.id for s in services(Settings(cds_model_dirs=""))] == [
        "breast-cancer-fna-rf",
        "breast-cancer-fna-svm",
        "diabetes-progression",
    ]


def broken(folder: Path, what: str) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    if what == "card":
        (folder / "MODEL_CARD.md").unlink()
    elif what == "width":
        manifest["inputs"] = manifest["inputs"][:1]
    elif what == "output":
        manifest["model"]["output"] = "no-such-output"
    elif what == "json":
        (folder / "manifest.json").write_text("{not json")
        return
    elif what == "unknown-field":
        manifest["inputs"][1]["loinc"] = "2085-9"
    elif what == "last-band":
        manifest["bands"][-1]["below"] = 1.0
    elif what == "summary":
        manifest["bands"][0]["summary"] = "Risk {risk}"
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("card", "needs MODEL_CARD.md"),
        ("width", "one float32 input of 1 columns"),
        ("output", "no output 'no-such-output'"),
        ("json", "manifest.json is not valid"),
        ("unknown-field", "loinc"),
        ("last-band", "the last band must have no 'below'"),
        ("summary", "a band summary formats `value` only"),
    ],
)
def test_a_package_that_cannot_be_used_is_named(tmp_path: Path, what: str, message: str) -> None:
    broken(tiny_package(tmp_path), what)
    with pytest.raises(ManifestError, match="tiny-risk") as error:
        services(Settings(cds_model_dirs=str(tmp_path)))
    assert message in str(error.value)


def test_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        services(Settings(cds_model_dirs=str(tmp_path / "nowhere")))


def test_a_copied_shipped_package_with_a_new_id_is_a_second_service(tmp_path: Path) -> None:
    copy = tmp_path / "fna-copy"
    shutil.copytree(SHIPPED / "breast-cancer-fna-rf", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["id"] = "fna-copy"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    ids = [s.definition.id for s in services(Settings(cds_model_dirs=str(tmp_path)))]
    assert ids[-1] == "fna-copy" and len(ids) == 4


async def test_the_fna_code_system_is_published_by_the_terminology_service(tmp_path) -> None:
    from fhir_server.assembly import open_service
    from fhir_server.context import SYSTEM
    from fhir_server.interactions.request import Request

    system = "urn:fhir-server:CodeSystem:fna-features"
    async with open_service(Settings(database=str(tmp_path / "fhir.db"))) as svc:
        query = (("system", system), ("code", "worst-concave-points"))
        found = await svc.handle(Request("GET", "CodeSystem/$lookup", query=query, context=SYSTEM))
    assert found.status == 200
    assert isinstance(found.body, dict)
    parts = {p["name"]: p.get("valueString") for p in found.body["parameter"]}
    assert parts["display"] == "FNA nuclei, worst concave points"


async def test_a_stored_code_system_of_the_same_url_takes_precedence(tmp_path) -> None:
    from fhir_server.assembly import open_service
    from fhir_server.context import SYSTEM
    from fhir_server.interactions.request import Request

    system = "urn:fhir-server:CodeSystem:fna-features"
    mine = {
        "resourceType": "CodeSystem",
        "url": system,
        "status": "active",
        "content": "complete",
        "concept": [{"code": "worst-concave-points", "display": "Site display"}],
    }
    async with open_service(Settings(database=str(tmp_path / "fhir.db"))) as svc:
        stored = await svc.handle(Request("POST", "CodeSystem", body=mine, context=SYSTEM))
        assert stored.status == 201
        query = (("system", system), ("code", "worst-concave-points"))
        found = await svc.handle(Request("GET", "CodeSystem/$lookup", query=query, context=SYSTEM))
    assert isinstance(found.body, dict)
    parts = {p["name"]: p.get("valueString") for p in found.body["parameter"]}
    assert parts["display"] == "Site display"


def test_a_condition_input_may_name_a_value_set_shipped_in_the_package(tmp_path: Path) -> None:
    from cds_hooks.models.inputs import Used, prefetch_templates, read
    from cds_hooks.models.manifest import read_manifest

    folder = tiny_package(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["inputs"].append({"name": "dm", "source": "condition", "value_set": "dm.json"})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    sct = "http://snomed.info/sct"
    value_set: dict[str, Any] = {
        "resourceType": "ValueSet",
        "compose": {"include": [{"system": sct, "concept": [{"code": "44054006"}]}]},
        "expansion": {"contains": [{"system": sct, "code": "46635009"}]},
    }
    (folder / "dm.json").write_text(json.dumps(value_set))
    dm = read_manifest(folder).inputs[-1]
    assert dm.codes == (f"{sct}|44054006", f"{sct}|46635009")
    assert prefetch_templates((dm,))["conditions"] == (
        f"Condition?patient={{{{context.patientId}}}}&code={sct}|44054006,{sct}|46635009"
    )
    condition = {
        "resourceType": "Condition",
        "code": {"coding": [{"system": sct, "code": "46635009"}]},
    }
    reading = read((dm,), {"conditions": bundle(condition)}, datetime.now(UTC))[0]
    assert isinstance(reading, Used) and reading.value == 1.0
    value_set["compose"]["include"][0]["filter"] = [{"property": "concept", "op": "is-a"}]
    (folder / "dm.json").write_text(json.dumps(value_set))
    with pytest.raises(ManifestError, match="must be given expanded"):
        read_manifest(folder)
