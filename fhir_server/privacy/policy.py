"""`PrivacyPolicy`: consents, security labels and masking on top of another access policy.

It wraps the policy that enforces scopes (`SmartPolicy`) and answers the same four
questions (`fhir_server.context.AccessPolicy`), narrowing what that policy lets a caller
see by what the caller may not receive:

- a resource of a patient whose active privacy Consent denies this caller (`consent.py`),
- a resource carrying a security label the caller is not cleared for (`labels.py`).

Both are compiled, per caller and type, into one withholding condition on the resource
(its patient, code and labels). `restrict` adds its negation to every search the
interactions run (the match, each `_include`/`_revinclude` round, each inner query of a
chain or `_has`, `$everything`), so the engines leave withheld resources out (and out of
totals); `visible` decides the same condition in memory for reads, history and exports.
As the `Disclosure`, it masks identifiers by role (`masking.py`) in every resource a
caller receives, and tells a search whether it withheld something (the Bundle then
carries the SUBSETTED tag).

Writes are left to the wrapped policy (consents govern disclosure, not recording), but
for one check: a resource carrying the MASKED label is refused (400), so that a masked
copy cannot overwrite the real identifiers.
A search over several types gets the union of their conditions: it may withhold a
resource of one type by a rule of another (never the reverse), and gives no total.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from fhir_server.auth.matching import matches, params_of
from fhir_server.context import AccessContext, AccessPolicy, Action
from fhir_server.errors import BadRequest
from fhir_server.model import fhirjson
from fhir_server.privacy.consent import Caller, ConsentIndex
from fhir_server.privacy.labels import DEFAULT_CLEARANCE, clearance_of, uncleared
from fhir_server.privacy.logic import Formula, all_of, any_of, not_
from fhir_server.privacy.masking import DEFAULT_MASKING, Rule, is_masked, mask
from fhir_server.search import compartments
from fhir_server.search.conditions import (
    ChainCondition,
    Clause,
    Condition,
    IdCondition,
    ReferenceCondition,
    SearchQuery,
)
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.values import ReferenceValue
from fhir_server.storage.base import StoredResource

RESEARCH = "HRESCH"
PATIENT_LINKED = ("patient", "subject")
_CACHE = 4096
NOTHING: Condition = IdCondition(())


@dataclass(frozen=True, slots=True)
class Withholding:
    """What withholds resources of one type from one caller: `condition` as a whole (for
    the engines), and its parts for deciding one resource in memory quickly: the labels
    condition, and per patient whose consent denies the caller, the condition on the
    resource (True: every resource of that patient)."""

    condition: Formula
    labels: Formula = False
    patients: Mapping[str, Formula] = field(default_factory=dict)
    params: tuple[str, ...] = ()

    def withholds(self, resource: dict[str, Any], indexer: Indexer) -> bool:
        if self.labels is not False and _holds(self.labels, resource, indexer):
            return True
        if not self.patients:
            return False
        owners = {
            v.target_id
            for v in indexer.values_of(resource, set(self.params))
            if isinstance(v, ReferenceValue) and v.target_type == "Patient"
        }
        if resource.get("resourceType") == "Patient":
            owners.add(str(resource.get("id")))
        return any(
            _holds(denial, resource, indexer)
            for owner in owners
            if (denial := self.patients.get(str(owner))) is not None
        )


NO_RULE = Withholding(False)


def _holds(formula: Formula, resource: dict[str, Any], indexer: Indexer) -> bool:
    if isinstance(formula, bool):
        return formula
    return matches(formula, resource, indexer.values_of(resource, params_of(formula)))


class PrivacyPolicy:
    """`inner`'s decisions, narrowed by consents and labels; identifiers masked by role."""

    def __init__(
        self,
        inner: AccessPolicy,
        registry: SearchRegistry,
        consents: ConsentIndex,
        *,
        indexer: Indexer | None = None,
        clearance: Mapping[str, frozenset[str]] = DEFAULT_CLEARANCE,
        masking: Mapping[str, Mapping[str, Rule]] = DEFAULT_MASKING,
        research_clients: frozenset[str] = frozenset(),
    ) -> None:
        self.inner = inner
        self.registry = registry
        self.indexer = indexer or Indexer(registry)
        self.consents = consents
        self.clearance = clearance
        self.masking = masking
        self.research_clients = research_clients
        self._members = frozenset(compartments.member_types(registry, "Patient"))
        self._rules: OrderedDict[tuple[Any, ...], tuple[Withholding, datetime | None]] = (
            OrderedDict()
        )
        self._boundaries: tuple[int, list[datetime]] = (-1, [])

    # -- AccessPolicy ------------------------------------------------------------------

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        self.inner.check(ctx, action, resource_type)

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None:
        self.inner.check_resource(ctx, action, resource_type, resource)
        if action in ("create", "update") and is_masked(resource):
            raise BadRequest(
                f"This {resource_type} carries the MASKED label: its masked identifiers "
                "would replace the real ones. Send the changes as a PATCH instead"
            )

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        if not self.inner.visible(ctx, rec):
            return False
        if ctx.system or rec.deleted:
            return True
        rule = self.rule(ctx, rec.type)
        if rule.condition is False or (not rule.patients and b'"security"' not in rec.data):
            return True  # no consent concerns the caller, and no label on the resource
        return not rule.withholds(fhirjson.loads(rec.data), self.indexer)

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        query = self.inner.restrict(ctx, query)
        clause = self._clause(ctx, query.types)
        if clause is None or clause in query.clauses:
            return query
        narrowed = replace(query, clauses=(*query.clauses, clause))
        return narrowed if len(query.types) == 1 else replace(narrowed, total="none")

    # -- Disclosure --------------------------------------------------------------------

    def present(self, ctx: AccessContext, rec: StoredResource) -> StoredResource:
        rules = None if ctx.system or ctx.role is None else self.masking.get(ctx.role)
        if not rules or rec.deleted or b'"identifier"' not in rec.data:
            return rec
        resource = fhirjson.loads(rec.data)
        if not mask(resource, rules):
            return rec
        return replace(rec, data=fhirjson.dumps(resource))

    def withheld(
        self, ctx: AccessContext, query: SearchQuery
    ) -> tuple[SearchQuery, SearchQuery] | None:
        clause = self._clause(ctx, query.types)
        if clause is None or clause not in query.clauses:
            return None
        lost = not_(clause[0])
        assert not isinstance(lost, bool)
        kept = tuple(c for c in query.clauses if c != clause)
        clauses = tuple((lost,) if c == clause else c for c in query.clauses)
        return _counting(replace(query, clauses=kept)), _counting(replace(query, clauses=clauses))

    # -- the withholding rule ----------------------------------------------------------

    def withholding(self, ctx: AccessContext, type: str) -> Formula:
        """When a resource of `type` is withheld from `ctx`: True, False or a condition."""
        return self.rule(ctx, type).condition

    def rule(self, ctx: AccessContext, type: str) -> Withholding:
        """What withholds a resource of `type` from `ctx` (cached until a consent changes
        or a consent period starts or ends)."""
        if ctx.system:
            return NO_RULE
        now = datetime.now(UTC)
        key = (
            ctx.role,
            ctx.fhir_user,
            ctx.client_id,
            ctx.user_organizations,
            ctx.purposes,
            ctx.scopes,
            type,
            self.consents.generation,
        )
        cached = self._rules.get(key)
        if cached is not None and (cached[1] is None or now < cached[1]):
            return cached[0]
        labels = uncleared(clearance_of(ctx, self.clearance))
        params = self._patient_params(type)
        patients = self._denied(ctx, type, params, now)
        always = tuple(sorted(p for p, d in patients.items() if d is True))
        conditions = [self._of_patients(type, params, always)] if always else []
        conditions += [
            self._of_patient(type, params, p, d) for p, d in patients.items() if d is not True
        ]
        rule = Withholding(any_of([labels, *conditions]), labels, patients, params)
        self._rules[key] = (rule, self._next_boundary(now))
        if len(self._rules) > _CACHE:
            self._rules.popitem(last=False)
        return rule

    def _denied(
        self, ctx: AccessContext, type: str, params: tuple[str, ...], now: datetime
    ) -> dict[str, Formula]:
        """The patients whose consents deny `ctx` resources of `type`, each with the
        condition on the resource (True: all of them)."""
        if type != "Patient" and not params:
            return {}
        caller = self.caller(ctx, now)
        has_code = self.registry.param(type, "code") is not None
        denied: dict[str, Formula] = {}
        for patient, consents in self.consents.patients().items():
            denial = any_of(c.denial(caller, type, has_code) for c in consents)
            if denial is not False:
                denied[patient] = denial
        return denied

    def caller(self, ctx: AccessContext, now: datetime) -> Caller:
        """Who `ctx` is to a consent's actors, and the purposes it acts for."""
        references = {ref for ref in (ctx.fhir_user,) if ref}
        references.update(ctx.user_organizations or ())
        if ctx.client_id:
            references.add(f"Device/{ctx.client_id}")
        purposes = set(ctx.purposes)
        if ctx.client_id in self.research_clients:
            purposes.add(RESEARCH)
        return Caller(frozenset(references), frozenset(purposes), now)

    def _of_patients(self, type: str, params: tuple[str, ...], ids: tuple[str, ...]) -> Formula:
        """The resources of any of the patients `ids`: a chain to them per parameter, which
        the engines answer with one lookup of the set (not one test per patient)."""
        patients = SearchQuery(("Patient",), ((IdCondition(ids),),), count=0, total="none")
        parts: list[Formula] = [ChainCondition(code, patients) for code in params]
        if type == "Patient":
            parts.insert(0, IdCondition(ids))
        return any_of(parts)

    def _of_patient(
        self, type: str, params: tuple[str, ...], patient: str, denial: Formula
    ) -> Formula:
        parts: list[Formula] = [ReferenceCondition(code, "Patient", patient) for code in params]
        if type == "Patient":
            parts.insert(0, IdCondition((patient,)))
        return all_of([any_of(parts), denial])

    def _patient_params(self, type: str) -> tuple[str, ...]:
        if type in self._members:
            return compartments.membership_params(self.registry, "Patient", type)
        return tuple(
            code
            for code in PATIENT_LINKED
            if (p := self.registry.param(type, code)) is not None
            and p.type == "reference"
            and "Patient" in self.registry.targets(p, type)
        )

    def _clause(self, ctx: AccessContext, types: tuple[str, ...]) -> Clause | None:
        if ctx.system:
            return None
        every = types or tuple(sorted(self.registry.resource_types))
        rule = any_of(self.withholding(ctx, t) for t in every)
        if rule is False:
            return None
        return (NOTHING,) if rule is True else (_negated(rule),)

    def _next_boundary(self, now: datetime) -> datetime | None:
        generation, boundaries = self._boundaries
        if generation != self.consents.generation:
            boundaries = self.consents.boundaries()
            self._boundaries = (self.consents.generation, boundaries)
        at = bisect_right(boundaries, now)
        return boundaries[at] if at < len(boundaries) else None


def _counting(query: SearchQuery) -> SearchQuery:
    """`query` asking only for its exact number of matches."""
    return replace(query, sort=(), count=0, offset=0, page=None, total="accurate")


def _negated(rule: Condition) -> Condition:
    negated = not_(rule)
    assert not isinstance(negated, bool)
    return negated
