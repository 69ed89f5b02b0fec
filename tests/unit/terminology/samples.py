"""Small terminology content written for the tests, and helpers to read results."""

from __future__ import annotations

from typing import Any

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
COLORS = "http://example.org/cs/colors"
COLORS_VS = "http://example.org/vs/colors"
DAG = "http://example.org/cs/dag"


def colors() -> dict[str, Any]:
    """A small hierarchy with designations, a retired and an abstract concept."""
    return {
        "resourceType": "CodeSystem",
        "id": "colors",
        "url": COLORS,
        "version": "1",
        "status": "active",
        "content": "complete",
        "caseSensitive": True,
        "property": [
            {"code": "status", "type": "code"},
            {"code": "hue", "type": "string"},
            {"code": "notSelectable", "type": "boolean"},
        ],
        "concept": [
            {
                "code": "red",
                "display": "Red",
                "definition": "The colour of blood",
                "designation": [{"language": "fr", "value": "Rouge"}],
                "property": [{"code": "hue", "valueString": "warm"}],
                "concept": [
                    {
                        "code": "crimson",
                        "display": "Crimson red",
                        "property": [{"code": "hue", "valueString": "warm"}],
                    },
                    {
                        "code": "scarlet",
                        "display": "Scarlet",
                        "property": [{"code": "status", "valueCode": "retired"}],
                    },
                ],
            },
            {
                "code": "blue",
                "display": "Blue",
                "designation": [
                    {"language": "fr", "value": "Bleu"},
                    {"language": "de", "value": "Blau"},
                ],
                "property": [{"code": "hue", "valueString": "cold"}],
                "concept": [{"code": "navy", "display": "Navy blue"}],
            },
            {
                "code": "group",
                "display": "Grouping",
                "property": [{"code": "notSelectable", "valueBoolean": True}],
            },
        ],
    }


def value_set(url: str, compose: dict[str, Any], id: str = "vs") -> dict[str, Any]:
    return {
        "resourceType": "ValueSet",
        "id": id,
        "url": url,
        "status": "active",
        "compose": compose,
    }


def dag() -> dict[str, Any]:
    """Flat, SNOMED-style: hierarchy only through `parent` properties; c has two parents."""

    def concept(code: str, *parents: str) -> dict[str, Any]:
        props = [{"code": "parent", "valueCode": p} for p in parents]
        return {"code": code, "display": code.upper(), "property": props}

    return {
        "resourceType": "CodeSystem",
        "id": "dag",
        "url": DAG,
        "status": "active",
        "content": "complete",
        "hierarchyMeaning": "is-a",
        "concept": [
            concept("root"),
            concept("a", "root"),
            concept("b", "root"),
            concept("c", "a", "b"),
            concept("d", "c"),
            concept("e", "b"),
        ],
    }


def params(resource: dict[str, Any]) -> dict[str, Any]:
    """Parameters as name -> value (last one wins; parts left as lists)."""
    out: dict[str, Any] = {}
    for entry in resource["parameter"]:
        value = next((v for k, v in entry.items() if k.startswith("value")), entry.get("part"))
        out[entry["name"]] = value
    return out


def codes(expansion: dict[str, Any]) -> list[str]:
    return [c["code"] for c in expansion["expansion"].get("contains", [])]
