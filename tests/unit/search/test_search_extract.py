"""Search registry and index extraction, against values worked out by hand from the R4 spec.

https://hl7.org/fhir/R4/search.html -- what each parameter type indexes; the counts are
those of the hl7.fhir.r4.core 4.0.1 package.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from fhir_server.search.extract import Indexer, with_fhirpathpy
from fhir_server.search.normalize import normalize
from fhir_server.search.paths import MemberPath, Step
from fhir_server.search.registry import SearchParam, build_registry, load_registry
from fhir_server.search.values import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)

UCUM = "http://unitsofmeasure.org"
MRN = "http://hospital.example/mrn"
EARLIEST = "0001-01-01T00:00:00.000000Z"
LATEST = "9999-12-31T23:59:59.999999Z"


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return Indexer(load_registry())


def values(indexer: Indexer, resource: dict[str, Any], param: str) -> set[Any]:
    return {v for v in indexer.extract(resource) if v.param == param}


# -- registry --------------------------------------------------------------------------


def test_registry_has_the_r4_package_counts() -> None:
    everything = build_registry(experimental=True)
    registry = load_registry()
    assert len(registry.resource_types) == 146  # 145 + Parameters
    assert {"Patient", "Observation", "Bundle", "Binary", "Parameters"} <= registry.resource_types
    assert "DomainResource" not in registry.resource_types
    assert len(list(everything.params)) == 1400  # every SearchParameter in the package
    assert len(list(registry.params)) == 1376  # less the 24 experimental ones
    assert set(registry.compartments) == {
        "Patient",
        "Encounter",
        "RelatedPerson",
        "Practitioner",
        "Device",
    }


def test_params_include_resource_and_domain_resource_levels() -> None:
    registry = load_registry()
    patient = registry.params_for("Patient")
    for code in (
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
        "_text",
        "_content",
    ):
        assert code in patient
    assert patient["_lastUpdated"].type == "date"
    assert patient["_profile"].type == "uri"
    assert "_text" not in registry.params_for("Bundle")  # Bundle is not a DomainResource
    assert patient["name"].url == "http://hl7.org/fhir/SearchParameter/Patient-name"
    assert registry.params_for("Condition")["subject"].url.endswith("/clinical-subject") is False
    assert registry.params_for("NoSuchType") == {}


def test_reference_targets_any_and_narrowed_by_expression() -> None:
    registry = load_registry()
    patient = registry.params_for("Observation")["patient"]
    assert set(patient.target) == {"Patient", "Group"}
    assert registry.targets(patient, "Observation") == {"Patient"}
    provenance = registry.params_for("Provenance")["target"]
    assert provenance.target == ("Resource",)
    assert registry.targets(provenance) == registry.resource_types - {"Parameters"}


def test_compartments_name_their_params() -> None:
    registry = load_registry()
    assert set(registry.compartment_params("Patient", "Observation")) >= {"subject", "performer"}
    assert registry.compartment_params("Patient", "Patient") == ("link",)
    assert registry.compartment_params("Encounter", "Encounter") == ("{def}",)


def test_added_parameter_is_indexed() -> None:
    registry = build_registry()
    indexer = Indexer(registry)
    patient = {"resourceType": "Patient", "maritalStatus": {"coding": [{"code": "M"}]}}
    assert not values(indexer, patient, "marital-status")
    registry.add(
        SearchParam(
            "http://example.org/sp/marital",
            "marital-status",
            ("Patient",),
            "token",
            "Patient.maritalStatus",
        )
    )
    assert values(indexer, patient, "marital-status") == {TokenValue("marital-status", None, "M")}


def test_uncompilable_expression_is_recorded_not_raised() -> None:
    registry = build_registry()
    registry.add(
        SearchParam(
            "http://example.org/sp/bad", "bad", ("Patient",), "string", "Patient.name.where("
        )
    )
    indexer = Indexer(registry)
    assert indexer.extract({"resourceType": "Patient", "name": [{"family": "Doe"}]})
    assert ("Patient", "bad") in indexer.failures


# -- token -----------------------------------------------------------------------------


def test_token_identifier_codes_booleans_contact_points(indexer: Indexer) -> None:
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {"system": MRN, "value": "12345", "type": {"text": "Medical Record"}},
            {"value": "no-system"},
        ],
        "active": True,
        "gender": "female",
        "telecom": [
            {"system": "phone", "value": "555-1234"},
            {"system": "email", "value": "a@b.org"},
        ],
    }
    assert values(indexer, patient, "identifier") == {
        TokenValue("identifier", MRN, "12345", "medical record"),
        TokenValue("identifier", None, "no-system"),
    }
    assert values(indexer, patient, "active") == {TokenValue("active", None, "true")}
    assert values(indexer, patient, "gender") == {TokenValue("gender", None, "female")}
    assert values(indexer, patient, "phone") == {TokenValue("phone", None, "555-1234")}
    assert values(indexer, patient, "email") == {TokenValue("email", None, "a@b.org")}
    assert values(indexer, patient, "telecom") == {
        TokenValue("telecom", None, "555-1234"),
        TokenValue("telecom", None, "a@b.org"),
    }


def test_token_codeable_concept_each_coding_and_text(indexer: Indexer) -> None:
    obs = {
        "resourceType": "Observation",
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"system": "http://snomed.info/sct", "code": "364075005"},
                {"system": "http://snomed.info/sct", "code": "364075005"},
            ],
            "text": "Pulse",
        },
    }
    assert values(indexer, obs, "code") == {
        TokenValue("code", "http://loinc.org", "8867-4", "heart rate"),
        TokenValue("code", "http://snomed.info/sct", "364075005"),
        TokenValue("code", None, None, "pulse"),
    }
    assert len([v for v in indexer.extract(obs) if v.param == "code"]) == 3  # duplicate-free


def test_deceased_is_a_boolean_expression(indexer: Indexer) -> None:
    # Patient.deceased.exists() and Patient.deceased != false
    assert values(
        indexer, {"resourceType": "Patient", "deceasedDateTime": "2020-01-01"}, "deceased"
    ) == {TokenValue("deceased", None, "true")}
    assert values(indexer, {"resourceType": "Patient", "deceasedBoolean": False}, "deceased") == {
        TokenValue("deceased", None, "false")
    }


def test_tags_and_profiles_from_meta(indexer: Indexer) -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {
            "tag": [{"system": "http://example.org/tags", "code": "vip"}],
            "security": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
            ],
            "profile": ["http://example.org/StructureDefinition/p"],
            "source": "http://example.org/source#a",
        },
    }
    assert values(indexer, patient, "_tag") == {
        TokenValue("_tag", "http://example.org/tags", "vip")
    }
    assert values(indexer, patient, "_security") == {
        TokenValue("_security", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R")
    }
    assert values(indexer, patient, "_profile") == {
        UriValue("_profile", "http://example.org/StructureDefinition/p")
    }
    assert values(indexer, patient, "_source") == {
        UriValue("_source", "http://example.org/source#a")
    }


# -- string ----------------------------------------------------------------------------


def test_normalize_strips_accents_and_case() -> None:
    assert normalize("Zoë") == "zoe"
    assert normalize("ÅNGSTRÖM") == "angstrom"
    assert normalize("Straße") == "strasse"
    assert normalize("Ｍüller") == "muller"  # noqa: RUF001 - fullwidth M folds by NFKD


def test_string_human_name_parts(indexer: Indexer) -> None:
    patient = {
        "resourceType": "Patient",
        "name": [
            {
                "family": "Chalmers",
                "given": ["Peter", "James"],
                "prefix": ["Mr."],
                "text": "Peter Chalmers",
            }
        ],
    }
    expected = {
        ("peter", "Peter"),
        ("james", "James"),
        ("chalmers", "Chalmers"),
        ("mr.", "Mr."),
        ("peter chalmers", "Peter Chalmers"),
        ("mr. peter james chalmers", "Mr. Peter James Chalmers"),
    }
    assert values(indexer, patient, "name") == {StringValue("name", v, e) for v, e in expected}
    assert values(indexer, patient, "family") == {StringValue("family", "chalmers", "Chalmers")}
    assert values(indexer, patient, "given") == {
        StringValue("given", "peter", "Peter"),
        StringValue("given", "james", "James"),
    }


def test_string_address_parts(indexer: Indexer) -> None:
    patient = {
        "resourceType": "Patient",
        "address": [
            {
                "line": ["534 Erewhon St", "Apt 2"],
                "city": "Montréal",
                "district": "Ville-Marie",
                "state": "QC",
                "postalCode": "H2X 1Y4",
                "country": "CA",
                "use": "home",
            }
        ],
    }
    assert {v.exact for v in values(indexer, patient, "address")} == {
        "534 Erewhon St",
        "Apt 2",
        "Montréal",
        "Ville-Marie",
        "QC",
        "H2X 1Y4",
        "CA",
    }
    assert values(indexer, patient, "address-city") == {
        StringValue("address-city", "montreal", "Montréal")
    }
    assert values(indexer, patient, "address-use") == {TokenValue("address-use", None, "home")}


def test_union_expressions_keep_only_own_branch(indexer: Indexer) -> None:
    practitioner = {"resourceType": "Practitioner", "name": [{"family": "Ng"}]}
    assert values(indexer, practitioner, "family") == {StringValue("family", "ng", "Ng")}
    plans = {p.code: p for p in indexer.plans("Practitioner")}
    assert [b.expression for b in plans["phonetic"].branches] == ["Practitioner.name"]
    assert [b.expression for b in plans["_tag"].branches] == ["Practitioner.meta.tag"]


# -- reference -------------------------------------------------------------------------


def test_reference_forms(indexer: Indexer) -> None:
    def subject(ref: str) -> set[Any]:
        obs = {"resourceType": "Observation", "subject": {"reference": ref}}
        return values(indexer, obs, "subject")

    assert subject("Patient/123") == {ReferenceValue("subject", "Patient", "123")}
    assert subject("Patient/123/_history/4") == {
        ReferenceValue("subject", "Patient", "123", None, "4")
    }
    assert subject("http://other.org/fhir/Patient/9") == {
        ReferenceValue("subject", "Patient", None, "http://other.org/fhir/Patient/9")
    }
    assert subject("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0") == {
        ReferenceValue("subject", None, None, "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0")
    }
    assert subject("#contained") == set()


def test_canonical_reference_with_version(indexer: Indexer) -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://example.org/Questionnaire/phq9|2.1",
    }
    assert values(indexer, response, "questionnaire") == {
        ReferenceValue(
            "questionnaire", "Questionnaire", None, "http://example.org/Questionnaire/phq9", "2.1"
        )
    }


def test_resolve_is_filters_the_reference_type(indexer: Indexer) -> None:
    # clinical-patient on Observation: Observation.subject.where(resolve() is Patient)
    to_patient = {"resourceType": "Observation", "subject": {"reference": "Patient/1"}}
    to_group = {"resourceType": "Observation", "subject": {"reference": "Group/1"}}
    assert values(indexer, to_patient, "patient") == {ReferenceValue("patient", "Patient", "1")}
    assert values(indexer, to_group, "patient") == set()
    assert values(indexer, to_group, "subject") == {ReferenceValue("subject", "Group", "1")}


# -- date ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth_date", "low", "high"),
    [
        ("1990", "1990-01-01T00:00:00.000000Z", "1990-12-31T23:59:59.999999Z"),
        ("1990-03", "1990-03-01T00:00:00.000000Z", "1990-03-31T23:59:59.999999Z"),
        ("2024-02", "2024-02-01T00:00:00.000000Z", "2024-02-29T23:59:59.999999Z"),
        ("1990-03-15", "1990-03-15T00:00:00.000000Z", "1990-03-15T23:59:59.999999Z"),
    ],
)
def test_date_precision_ranges(indexer: Indexer, birth_date: str, low: str, high: str) -> None:
    patient = {"resourceType": "Patient", "birthDate": birth_date}
    assert values(indexer, patient, "birthdate") == {DateValue("birthdate", low, high)}


def test_date_time_offsets_periods_and_timings(indexer: Indexer) -> None:
    at_offset = {"resourceType": "Observation", "effectiveDateTime": "2016-03-28T09:30:00+02:00"}
    assert values(indexer, at_offset, "date") == {
        DateValue("date", "2016-03-28T07:30:00.000000Z", "2016-03-28T07:30:00.999999Z")
    }
    open_period = {"resourceType": "Observation", "effectivePeriod": {"start": "2016-03-28"}}
    assert values(indexer, open_period, "date") == {
        DateValue("date", "2016-03-28T00:00:00.000000Z", LATEST)
    }
    ended = {"resourceType": "Encounter", "period": {"end": "2016-03-28T10:00:00Z"}}
    assert values(indexer, ended, "date") == {
        DateValue("date", EARLIEST, "2016-03-28T10:00:00.999999Z")
    }
    timing = {
        "resourceType": "Observation",
        "effectiveTiming": {"event": ["2020-01-01", "2020-01-03"]},
    }
    assert values(indexer, timing, "date") == {
        DateValue("date", "2020-01-01T00:00:00.000000Z", "2020-01-01T23:59:59.999999Z"),
        DateValue("date", "2020-01-03T00:00:00.000000Z", "2020-01-03T23:59:59.999999Z"),
    }


# -- number, quantity, uri -------------------------------------------------------------


def test_quantities_index_their_exact_value(indexer: Indexer) -> None:
    """Only the search value has an implicit precision (search.html#number)."""
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 100, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
    }
    assert values(indexer, obs, "value-quantity") == {
        QuantityValue("value-quantity", 100.0, 100.0, UCUM, "mg/dL", "mg/dL")
    }
    precise = {"resourceType": "Observation", "valueQuantity": {"value": 5.4, "code": "mmol/L"}}
    assert values(indexer, precise, "value-quantity") == {
        QuantityValue("value-quantity", 5.4, 5.4, None, "mmol/L")
    }


def test_quantity_comparator_range_and_money(indexer: Indexer) -> None:
    below = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 5, "comparator": "<", "system": UCUM, "code": "mg"},
    }
    assert values(indexer, below, "value-quantity") == {
        QuantityValue("value-quantity", -math.inf, 5.0, UCUM, "mg")
    }
    ranged = {
        "resourceType": "Observation",
        "valueRange": {
            "low": {"value": 2, "system": UCUM, "code": "mg"},
            "high": {"value": 4, "system": UCUM, "code": "mg"},
        },
    }
    assert values(indexer, ranged, "value-quantity") == set()  # value-quantity: Quantity only
    invoice = {"resourceType": "Invoice", "totalGross": {"value": 12.5, "currency": "EUR"}}
    assert values(indexer, invoice, "totalgross") == {
        QuantityValue("totalgross", 12.5, 12.5, "urn:iso:std:iso:4217", "EUR")
    }


def test_number_ranges(indexer: Indexer) -> None:
    risk = {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": 0.25}]}
    assert values(indexer, risk, "probability") == {NumberValue("probability", 0.25, 0.25)}
    ranged = {
        "resourceType": "RiskAssessment",
        "prediction": [{"probabilityRange": {"low": {"value": 0.1}}}],
    }
    assert values(indexer, ranged, "probability") == {NumberValue("probability", 0.1, math.inf)}


def test_uri(indexer: Indexer) -> None:
    value_set = {"resourceType": "ValueSet", "url": "http://example.org/fhir/ValueSet/x"}
    assert values(indexer, value_set, "url") == {
        UriValue("url", "http://example.org/fhir/ValueSet/x")
    }


# -- the machinery ---------------------------------------------------------------------


def test_absent_elements_are_not_evaluated(indexer: Indexer) -> None:
    # only `deceased`, whose expression is false for a Patient without deceased[x]
    assert indexer.extract({"resourceType": "Patient", "id": "x"}) == [
        TokenValue("deceased", None, "false")
    ]
    assert indexer.extract({"resourceType": "Observation", "id": "x"}) == []
    assert indexer.extract({"resourceType": "NoSuchType", "name": "x"}) == []
    assert indexer.extract({"id": "no type"}) == []
    plans = {p.code: p for p in indexer.plans("Patient")}
    assert plans["given"].branches[0].keys == ("name",)
    # exists() is not a plain path, but reads only deceased[x]: its empty result is cached
    assert set(plans["deceased"].branches[0].keys or ()) == {"deceasedBoolean", "deceasedDateTime"}
    assert plans["deceased"].branches[0].absent == ((None, False),)
    dead = indexer.extract({"resourceType": "Patient", "deceasedBoolean": True})
    assert TokenValue("deceased", None, "true") in dead
    assert set(plans["death-date"].branches[0].keys or ()) == {
        "deceasedBoolean",
        "deceasedDateTime",
    }


def test_all_package_expressions_compile(indexer: Indexer) -> None:
    indexer.prepare()
    assert indexer.failures == {}


def test_fast_paths_agree_with_fhirpathpy(indexer: Indexer) -> None:
    """Every expression the member-path route takes gives what fhirpathpy gives."""
    checked = 0
    for type in sorted(indexer.registry.resource_types):
        for plan in indexer.plans(type):
            for branch in getattr(plan, "branches", ()):  # a CompositePlan has none
                if not isinstance(branch.evaluate, MemberPath):
                    continue
                for as_list in (True, False):
                    resource = {"resourceType": type, **_example(branch.evaluate.steps, 0, as_list)}
                    slow = with_fhirpathpy(branch.expression)(resource)
                    assert branch.evaluate(resource) == slow, branch.expression
                checked += 1
    assert checked > 2000


def _example(steps: list[Step], at: int, as_list: bool) -> dict[str, Any]:
    """A resource fragment that holds a value along `steps` (and a decoy for filters)."""
    keys, where = steps[at]
    key, fhir_type = keys[-1]
    value: Any
    if at + 1 < len(steps):
        value = _example(steps, at + 1, as_list)
    elif fhir_type in ("boolean",):
        value = True
    elif fhir_type in ("decimal", "integer", "positiveInt", "unsignedInt"):
        value = 3
    elif fhir_type and fhir_type[0].islower():
        value = "2020-01-02"
    else:
        value = {"id": "x"}
    if where is not None:
        field, literal = where
        return {key: [{**value, field: literal}, {**value, field: literal + "-other"}]}
    return {key: [value] if as_list else value}


def test_slow_route_gives_the_same_values() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"family": "Doe", "given": ["Jo"]}],
        "telecom": [{"system": "phone", "value": "1"}],
        "birthDate": "2000",
        "generalPractitioner": [{"reference": "Practitioner/1"}],
    }
    fast, slow = Indexer(load_registry()), Indexer(load_registry(), fast_paths=False)
    assert fast.extract(patient) == slow.extract(patient)
