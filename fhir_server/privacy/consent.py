"""Privacy consents: R4 `Consent` (https://hl7.org/fhir/R4/consent.html) with scope
`patient-privacy`, kept in memory per patient and compiled into the conditions that
withhold what a patient did not consent to share with a caller.

A Consent applies while its `status` is `active`. Its root `provision` is the base rule
(`type` deny or permit; permit when absent) and each nested provision an exception to
its parent (https://hl7.org/fhir/R4/consent-definitions.html#Consent.provision.provision:
"Rules which provide exceptions to the base rule or subrules"). A provision applies to an
access when every condition it states holds:

- `period`: now is within it;
- `actor`: one actor's `reference` is the caller: their `fhirUser` (Practitioner,
  PractitionerRole, RelatedPerson, Patient), one of their organizations
  (`AccessContext.user_organizations`, from their PractitionerRoles), or their client
  app as `Device/<client_id>`; the actor's `role` is not compared;
- `action`: one of access, use, disclose (the actions a read, a search or an export is);
- `purpose`: one of the caller's purposes of use (`AccessContext.purposes`, e.g.
  HRESCH for research);
- `class`: the resource's type (a code of the resource-types system, or its bare name);
- `code`: one of the resource's `code` codings;
- `securityLabel`: one of the resource's `meta.security` labels.

The deepest provisions that apply decide (deny when any of them denies); with several
active consents of one patient, a deny in any of them wins. `provision.data` (consent
about named resources) and `dataPeriod` are not evaluated: a provision that uses them
is taken as not applying.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_server.model import fhirjson
from fhir_server.privacy.logic import Formula, all_of, any_of, not_
from fhir_server.search.conditions import TokenCondition
from fhir_server.storage.base import StoredResource

log = logging.getLogger("fhir_server.privacy")

SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
READ_ACTIONS = frozenset({"access", "use", "disclose"})
Code = tuple[str | None, str]  # (system, code); system None: any


@dataclass(frozen=True, slots=True)
class Provision:
    """One rule of a Consent and its exceptions (`children`)."""

    type: str = "permit"
    start: datetime | None = None
    end: datetime | None = None
    actors: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()
    purposes: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    codes: tuple[Code, ...] = ()
    labels: tuple[Code, ...] = ()
    unsupported: bool = False  # `data` or `dataPeriod`: never taken as applying
    children: tuple[Provision, ...] = ()

    def boundaries(self) -> Iterable[datetime]:
        """The instants at which this rule (or an exception) starts or stops applying."""
        yield from (t for t in (self.start, self.end) if t is not None)
        for child in self.children:
            yield from child.boundaries()


@dataclass(frozen=True, slots=True)
class Caller:
    """What a provision compares with the caller: who they are and why they ask."""

    references: frozenset[str]
    purposes: frozenset[str]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class PrivacyConsent:
    id: str
    patient: str
    provision: Provision

    def denial(self, caller: Caller, type: str, code_param: bool) -> Formula:
        """When this consent denies `caller` a resource of `type`: True (always), False
        (never) or a condition on the resource (its code or labels)."""
        return _denied(self.provision, caller, type, code_param)


def _denied(node: Provision, caller: Caller, type: str, code_param: bool) -> Formula:
    """D(node) = M(node) and ((node denies and no exception applies) or an exception denies)."""
    applies = _applies(node, caller, type, code_param)
    if applies is False:
        return False
    exceptions = [_applies(c, caller, type, code_param) for c in node.children]
    denied_here = all_of([node.type == "deny", not_(any_of(exceptions))])
    denied_below = any_of(_denied(c, caller, type, code_param) for c in node.children)
    return all_of([applies, any_of([denied_here, denied_below])])


def _applies(node: Provision, caller: Caller, type: str, code_param: bool) -> Formula:
    if node.unsupported:
        return False
    if node.start is not None and caller.now < node.start:
        return False
    if node.end is not None and caller.now > node.end:
        return False
    if node.actors and not node.actors & caller.references:
        return False
    if node.actions and not node.actions & READ_ACTIONS:
        return False
    if node.purposes and not node.purposes & caller.purposes:
        return False
    if node.classes and type not in node.classes:
        return False
    parts: list[Formula] = []
    if node.codes:
        parts.append(
            any_of(TokenCondition("code", s, c) for s, c in node.codes) if code_param else False
        )
    if node.labels:
        parts.append(any_of(TokenCondition("_security", s, c) for s, c in node.labels))
    return all_of(parts)


# -- reading Consent resources ----------------------------------------------------------


def parse_consent(resource: dict[str, Any]) -> PrivacyConsent | None:
    """The privacy consent `resource` states, or None when it is not an active
    patient-privacy Consent of a local Patient."""
    if resource.get("status") != "active" or not _is_privacy(resource.get("scope")):
        return None
    patient = str((resource.get("patient") or {}).get("reference") or "")
    kind, _, id = patient.rpartition("/")
    if not kind.endswith("Patient") or not id:
        return None
    provision = resource.get("provision")
    root = _provision(provision if isinstance(provision, dict) else {}, root=True)
    return PrivacyConsent(str(resource.get("id")), id, root)


def _is_privacy(scope: Any) -> bool:
    codings = (scope or {}).get("coding") or [] if isinstance(scope, dict) else []
    return any(
        isinstance(c, dict)
        and c.get("code") == "patient-privacy"
        and c.get("system") in (None, SCOPE_SYSTEM)
        for c in codings
    )


def _provision(p: dict[str, Any], *, root: bool = False) -> Provision:
    period = p.get("period") or {}
    return Provision(
        type="deny" if p.get("type") == "deny" else "permit",
        start=_instant(period.get("start"), low=True),
        end=_instant(period.get("end"), low=False),
        actors=frozenset(
            ref
            for a in p.get("actor") or []
            if isinstance(ref := (a.get("reference") or {}).get("reference"), str)
        ),
        actions=frozenset(code for _, code in _codes(p.get("action") or [])),
        purposes=frozenset(c.get("code") for c in p.get("purpose") or [] if c.get("code")),
        classes=frozenset(c.get("code") for c in p.get("class") or [] if c.get("code")),
        codes=tuple(_codes(p.get("code") or [])),
        labels=tuple(
            (c.get("system"), c["code"]) for c in p.get("securityLabel") or [] if c.get("code")
        ),
        unsupported=bool(p.get("data") or p.get("dataPeriod")),
        children=tuple(_provision(c) for c in p.get("provision") or [] if isinstance(c, dict)),
    )


def _codes(concepts: list[Any]) -> Iterable[tuple[str | None, str]]:
    for concept in concepts:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                yield coding.get("system"), str(coding["code"])


def _instant(value: Any, *, low: bool) -> datetime | None:
    """A FHIR dateTime as an aware instant (a date or a partial date: its first or last
    moment; no offset: UTC)."""
    if not isinstance(value, str) or not value:
        return None
    text = value
    if len(text) == 4:
        text += "-01-01" if low else "-12-31"
    elif len(text) == 7:
        text += "-01" if low else "-28"  # conservative end of the month
    if len(text) == 10:
        text += "T00:00:00" if low else "T23:59:59.999999"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        log.warning("a Consent period has an unreadable dateTime: ignored")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ConsentIndex:
    """The active privacy consents per patient, kept in step with the stored Consents
    (`apply` each version; `FhirService.watch` does it across server processes)."""

    def __init__(self) -> None:
        self._by_id: dict[str, PrivacyConsent] = {}
        self._by_patient: dict[str, dict[str, PrivacyConsent]] = {}
        self.generation = 0

    def apply(self, rec: StoredResource) -> None:
        """Take in one stored version of a Consent (a deletion or an inactive one drops it)."""
        found = None if rec.deleted else parse_consent(fhirjson.loads(rec.data))
        old = self._by_id.pop(rec.id, None)
        if old is not None:
            held = self._by_patient.get(old.patient, {})
            held.pop(rec.id, None)
            if not held:
                self._by_patient.pop(old.patient, None)
        if found is not None:
            self._by_id[rec.id] = found
            self._by_patient.setdefault(found.patient, {})[rec.id] = found
        if old is not None or found is not None:
            self.generation += 1

    def patients(self) -> dict[str, tuple[PrivacyConsent, ...]]:
        return {p: tuple(held.values()) for p, held in self._by_patient.items()}

    def boundaries(self) -> list[datetime]:
        """Every instant at which some consent's rules change, sorted."""
        return sorted({t for c in self._by_id.values() for t in c.provision.boundaries()})
