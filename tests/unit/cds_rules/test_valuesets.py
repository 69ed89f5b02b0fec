"""The shipped value sets: valid FHIR, answered alone or through the terminology service,
and replaceable by a site's own ValueSet of the same url."""

from __future__ import annotations

import copy

import pytest

from cds_hooks.rules import valuesets as vs
from fhir_server.assembly import shipped_terminology
from fhir_server.model.validate import validate_resource
from terminology import Terminology

SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    found = Terminology()
    for value_set in vs.value_sets():
        found.put(value_set)
    return found


def test_every_value_set_the_services_name_ships():
    urls = {v["url"] for v in vs.value_sets()}
    named = {getattr(vs, n) for n in dir(vs) if n.isupper() and n != "BASE"}
    assert named == urls and len(urls) == 10


@pytest.mark.parametrize("value_set", vs.value_sets(), ids=lambda v: v["id"])
def test_each_is_a_valid_enumerated_value_set(value_set):
    validate_resource(copy.deepcopy(value_set))
    assert (
        value_set["url"].endswith(value_set["id"].removeprefix("cds-"))
        and value_set["status"] == "active"
    )
    for include in value_set["compose"]["include"]:
        assert include["concept"] and "filter" not in include and "valueSet" not in include


@pytest.mark.parametrize(
    ("url", "system", "code", "member"),
    [
        (vs.ANTIHYPERTENSIVES, RXNORM, "197361", True),  # amlodipine 5 MG Oral Tablet
        (vs.ANTIHYPERTENSIVES, RXNORM, "83367", False),  # atorvastatin
        (vs.STATINS, RXNORM, "83367", True),
        (vs.DIABETES, SNOMED, "44054006", True),
        (vs.DIABETES, "http://loinc.org", "44054006", False),  # right code, wrong system
        (vs.ATRIAL_FIBRILLATION, "http://hl7.org/fhir/sid/icd-10-cm", "I48.91", True),
    ],
)
def test_membership_alone_and_through_terminology(terminology, url, system, code, member):
    assert vs.ShippedCodes().contains(url, system, code) is member
    assert terminology.contains(url, system, code) is member
    assert vs.Membership(terminology).contains(url, system, code) is member


def test_a_site_value_set_of_the_same_url_takes_precedence(terminology):
    site = copy.deepcopy(next(v for v in vs.value_sets() if v["url"] == vs.STATINS))
    site["id"] = "site-statins"
    site["compose"]["include"][0]["concept"].append(
        {"code": "2001254", "display": "bempedoic acid"}
    )
    local = Terminology()
    local.put(site)
    codes = vs.Membership(local)
    assert codes.contains(vs.STATINS, RXNORM, "2001254") is True
    assert vs.Membership().contains(vs.STATINS, RXNORM, "2001254") is False


def test_an_unknown_value_set_is_unknown_not_empty():
    assert vs.ShippedCodes().contains("http://example.org/ValueSet/x", SNOMED, "1") is None
    assert (
        vs.Membership().concept_in(
            {"coding": [{"system": SNOMED, "code": "1"}]}, "http://example.org/x"
        )
        is False
    )


def test_a_stored_value_set_loaded_after_the_shipped_ones_takes_precedence():
    """The server's terminology holds the shipped sets first; stored content, loaded after
    them at start or written later, wins for the same url."""
    terminology = shipped_terminology()
    assert terminology.contains(vs.STATINS, RXNORM, "2001254") is False
    site = copy.deepcopy(next(v for v in vs.value_sets() if v["url"] == vs.STATINS))
    site["id"] = "site-statins"
    site["compose"]["include"][0]["concept"] = [{"code": "2001254", "display": "bempedoic acid"}]
    terminology.put(site)
    assert terminology.contains(vs.STATINS, RXNORM, "2001254") is True
    assert terminology.contains(vs.STATINS, RXNORM, "83367") is False
    terminology.remove("ValueSet", "site-statins")
    assert terminology.contains(vs.STATINS, RXNORM, "83367") is True
