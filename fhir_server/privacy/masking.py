"""Role-based masking of identifiers: the one table that says which role sees how much of
which kind of identifier, and the function that applies it to a resource.

The kind of an identifier is its `type` code from the v2-0203 identifier types (SS for a
social security number, MR medical record number, DL driver's licence, PPN passport,
MB member number, AN account number, ...) or, without one, SS for the US SSN system; an
identifier of no known kind is of kind `*` only. A rule says `last4` (every letter and
digit but the last four replaced by `*`) or `hidden` (the value removed, with the
data-absent-reason `masked`). A masked resource carries the `MASKED` security label
(v3-ObservationValue) so that a client can tell. Identifiers of the resource and of its
contained resources are masked; a role the table does not name sees them in full.
`FHIR_PRIVACY_MASKING` replaces the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

Rule = Literal["last4", "hidden"]
Table = Mapping[str, Mapping[str, Rule]]

DEFAULT_MASKING: dict[str, dict[str, Rule]] = {
    "front-desk": {"SS": "last4"},
    "analyst": {"*": "hidden"},
}
"""Role -> identifier kind (v2-0203 code, or `*` for every kind) -> how it is masked."""

SSN_SYSTEMS = frozenset({"http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1"})
ID_TYPES = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
MASKED_LABEL = {"system": OBSERVATION_VALUE, "code": "MASKED", "display": "masked"}
ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def kind_of(identifier: dict[str, Any]) -> str | None:
    """The v2-0203 type code of `identifier` (SS for an SSN system), or None."""
    for coding in (identifier.get("type") or {}).get("coding") or []:
        if (
            isinstance(coding, dict)
            and coding.get("code")
            and coding.get("system")
            in (
                ID_TYPES,
                "http://hl7.org/fhir/v2/0203",
                None,
            )
        ):
            return str(coding["code"])
    return "SS" if identifier.get("system") in SSN_SYSTEMS else None


def mask(resource: dict[str, Any], rules: Mapping[str, Rule]) -> bool:
    """Mask `resource`'s identifiers in place by `rules`; whether anything changed."""
    changed = False
    for identifier in _identifiers(resource):
        rule = rules.get(kind_of(identifier) or "*") or rules.get("*")
        value = identifier.get("value")
        if rule is None or not isinstance(value, str):
            continue
        if rule == "last4":
            identifier["value"] = last_four(value)
        else:
            del identifier["value"]
            identifier["_value"] = {"extension": [{"url": ABSENT, "valueCode": "masked"}]}
        changed = True
    if changed:
        meta = resource.setdefault("meta", {})
        labels = meta.setdefault("security", [])
        if not any(label.get("code") == "MASKED" for label in labels):
            labels.append(dict(MASKED_LABEL))
    return changed


def is_masked(resource: dict[str, Any]) -> bool:
    """Whether `resource` carries the MASKED label (a masked copy of a stored one)."""
    labels = (resource.get("meta") or {}).get("security") or []
    return any(
        isinstance(label, dict)
        and label.get("code") == "MASKED"
        and label.get("system") == OBSERVATION_VALUE
        for label in labels
    )


def last_four(value: str) -> str:
    """`value` with every letter and digit but the last four replaced by `*`."""
    seen = 0
    out = []
    for char in reversed(value):
        if char.isalnum():
            seen += 1
            out.append(char if seen <= 4 else "*")
        else:
            out.append(char)
    return "".join(reversed(out))


def _identifiers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for holder in [resource, *(resource.get("contained") or [])]:
        if not isinstance(holder, dict):
            continue
        value = holder.get("identifier")
        if isinstance(value, dict):
            found.append(value)
        elif isinstance(value, list):
            found.extend(i for i in value if isinstance(i, dict))
    return found
