"""The benchmark's synthetic dataset: deterministic, valid FHIR, self-contained bundles."""

from __future__ import annotations

import itertools

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.dataset import patient_template, transaction_bundles


def serialized(n: int, seed: int) -> list[bytes]:
    return [orjson.dumps(bundle) for bundle in transaction_bundles(n, seed, bundle_size=50)]


def test_same_seed_gives_the_same_bytes() -> None:
    assert serialized(400, seed=7) == serialized(400, seed=7)


def test_another_seed_gives_other_data() -> None:
    assert serialized(400, seed=7) != serialized(400, seed=8)


@pytest.mark.parametrize("n", [1, 13, 250])
def test_exactly_n_resources(n: int) -> None:
    assert sum(len(b["entry"]) for b in transaction_bundles(n, seed=1, bundle_size=40)) == n


def test_bundles_are_transactions_of_posts() -> None:
    for bundle in transaction_bundles(300, seed=3, bundle_size=60):
        assert bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"] == {"method": "POST", "url": entry["resource"]["resourceType"]}


def test_every_resource_type_appears() -> None:
    types = {
        entry["resource"]["resourceType"]
        for bundle in transaction_bundles(300, seed=3)
        for entry in bundle["entry"]
    }
    assert types == {"Patient", "Encounter", "Observation", "Condition"}


def references(value: object) -> list[str]:
    if isinstance(value, dict):
        found = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return found + [ref for item in value.values() for ref in references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in references(item)]
    return []


def test_urn_references_resolve_within_their_bundle() -> None:
    for bundle in transaction_bundles(500, seed=5, bundle_size=30):
        full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
        refs = references([entry["resource"] for entry in bundle["entry"]])
        assert refs, "the resources should refer to their patient"
        assert set(refs) <= full_urls


def test_resources_validate_against_the_r4b_models() -> None:
    entries = itertools.chain.from_iterable(
        bundle["entry"] for bundle in transaction_bundles(120, seed=11)
    )
    for entry in entries:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_a_whole_bundle_validates() -> None:
    bundle = next(transaction_bundles(60, seed=2))
    get_fhir_model_class("Bundle").model_validate(bundle)


def test_patient_template_is_a_valid_patient_with_a_placeholder() -> None:
    body = orjson.dumps(patient_template()).decode()
    assert "__MRN__" in body
    get_fhir_model_class("Patient").model_validate(orjson.loads(body.replace("__MRN__", "MRN1")))
