"""`SmartPolicy`: the `AccessPolicy` that enforces a caller's SMART scopes on every path.

The interactions ask four questions (see `fhir_server.context`); this module answers them
from the token's scopes (`scopes.py`) and launch context:

- `check(ctx, action, type)`: some scope grants the action's letter on the type (read r,
  search s, create c, update u, delete d, history s; instance history asks for r). An
  operation that reads data needs r or s on its type; `admin` (`$reindex`,
  `$convert-hl7v2`, `POST /hl7v2`) needs `system/*.cruds`.
- `restrict(ctx, query)`: every search (the match, each `_include`/`_revinclude` round,
  each inner query of a chain or `_has`, `$everything`, the criteria of a conditional
  write) gets an OR over the scopes that let the caller see the type, each scope the AND
  of its reach and its granular query. A chain or `_has` over several types is split
  into one per type, so each is restricted exactly.
- `visible(ctx, rec)`: the same test in memory on one resource (read, vread, history).
- `check_resource(ctx, action, type, resource)`: a resource written (and, for an update,
  patch or delete, the version it replaces) must be within a scope that grants the write:
  a write can neither reach into nor move a resource out of the caller's reach.

Reach, by level: `system/` is everything; `patient/` is the Patient compartment of the
launch patient (R4 CompartmentDefinition), plus Device, Task, Contract and
GuidanceResponse through their `patient`/`subject`, and Binary through `securityContext`;
`user/` is everything for a practitioner (or, where the deployment limits clinicians to
their organizations, the patients those organizations manage), the user's own compartment
for a user who is a Patient, and nothing of patient data for other users. Types outside
all of these (shared data: Practitioner, Organization, Medication, terminology...) may be
read under any level but written only with `user/` or `system/` scopes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhir_server.auth.matching import matches, params_of, supports
from fhir_server.auth.scopes import Scope, letter_string, parse_scopes
from fhir_server.context import AccessContext, Action
from fhir_server.errors import BadRequest, Forbidden
from fhir_server.model import fhirjson
from fhir_server.search import compartments
from fhir_server.search.conditions import (
    AllOf,
    AnyOf,
    ChainCondition,
    Clause,
    Condition,
    HasCondition,
    IdCondition,
    Not,
    ReferenceCondition,
    SearchQuery,
)
from fhir_server.search.extract import Indexer
from fhir_server.search.parse import parse_search
from fhir_server.search.registry import SearchRegistry
from fhir_server.storage.base import StoredResource

log = logging.getLogger("fhir_server.auth")

LETTER: dict[str, str] = {
    "read": "r",
    "search": "s",
    "create": "c",
    "update": "u",
    "delete": "d",
    "history": "s",
}
SEE = frozenset("rs")  # what lets a caller see a resource (read it, or find it by search)
NOTHING: Condition = IdCondition(())  # matches no resource
EVERY: Condition = AllOf(())  # matches every resource (a level that does not restrict)
PATIENT_LINKED = ("patient", "subject")  # outside the compartment, these still name a patient
_CACHE = 4096


@dataclass(frozen=True, slots=True)
class Restriction:
    """What one set of scopes lets a caller reach in one resource type.

    `condition` None: every resource; `NOTHING`: none; otherwise only the resources that
    match it. `exact` False when `condition` alone cannot decide (Binary): `visible`
    decides on the resource itself."""

    condition: Condition | None
    exact: bool = True

    @property
    def everything(self) -> bool:
        return self.condition is None

    @property
    def nothing(self) -> bool:
        return self.condition == NOTHING and self.exact


ALL = Restriction(None)
NONE = Restriction(NOTHING)


class SmartPolicy:
    """Enforces SMART scopes (v1 and v2, granular) over `registry`'s types and parameters."""

    def __init__(self, registry: SearchRegistry, indexer: Indexer | None = None) -> None:
        self.registry = registry
        self.indexer = indexer or Indexer(registry)
        self._members = frozenset(compartments.member_types(registry, "Patient"))
        self._granular: OrderedDict[tuple[Any, ...], SearchQuery | None] = OrderedDict()
        self._restrictions: OrderedDict[tuple[Any, ...], Restriction] = OrderedDict()
        self._checks: OrderedDict[tuple[Any, ...], bool] = OrderedDict()

    # -- the AccessPolicy protocol -----------------------------------------------------

    def check(self, ctx: AccessContext, action: Action, resource_type: str | None) -> None:
        if ctx.system:
            return
        if action == "admin":
            if not any(
                s.level == "system" and s.type == "*" and len(s.letters) == 5
                for s in self.scopes(ctx)
            ):
                raise Forbidden(
                    "This operation administers the server: it needs the scope system/*.cruds"
                )
            return
        key = (ctx.scopes, ctx.patient is None, action, resource_type)
        allowed = self._checks.get(key)
        if allowed is None:
            letters = SEE if action == "operation" else frozenset(LETTER[action])
            allowed = any(
                s.grants(letter, resource_type) for s in self.scopes(ctx) for letter in letters
            )
            _remember(self._checks, key, allowed)
        if not allowed:
            letters = SEE if action == "operation" else frozenset(LETTER[action])
            raise Forbidden(_refusal(action, resource_type, letters))

    def check_resource(
        self, ctx: AccessContext, action: Action, resource_type: str, resource: dict[str, Any]
    ) -> None:
        if ctx.system:
            return
        letter = LETTER.get(action)
        if letter is None:
            return
        found = self.restriction(ctx, frozenset(letter), resource_type)
        if found.everything:
            return
        if found.nothing or not self._in(ctx, found, resource_type, resource, letter):
            what = (
                f"{resource_type}/{resource.get('id')}"
                if resource.get("id")
                else (f"This {resource_type}")
            )
            raise Forbidden(f"{what} is outside what the granted scopes allow to {action}")

    def visible(self, ctx: AccessContext, rec: StoredResource) -> bool:
        if ctx.system:
            return True
        found = self.restriction(ctx, SEE, rec.type)
        if found.everything or found.nothing:
            return found.everything
        if rec.deleted:  # a deletion holds no data to judge: only the unrestricted see it
            return False
        return self._in(ctx, found, rec.type, fhirjson.loads(rec.data), None)

    def restrict(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        if ctx.system:
            return query
        query = self._restrict_inner(ctx, query)
        types = query.types or tuple(sorted(self.registry.resource_types))
        found = {t: self.restriction(ctx, SEE, t) for t in types}
        allowed = tuple(t for t in types if not found[t].nothing)
        if not allowed:
            return _with_clause(query, (NOTHING,))
        if all(found[t].everything for t in allowed):
            return query if len(allowed) == len(types) else replace(query, types=allowed)
        if len(allowed) == 1:
            condition = found[allowed[0]].condition
            assert condition is not None
            return _with_clause(replace(query, types=allowed), (condition,))
        # several types under different restrictions: an OR of them over-approximates
        # (a condition of one type may match another); `visible` drops the strays, and
        # the total would count them, so none is given
        narrowed = replace(query, types=allowed, total="none")
        if any(found[t].everything for t in allowed):
            return narrowed
        return _with_clause(narrowed, tuple(_unique(found[t].condition for t in allowed)))

    # -- scopes -----------------------------------------------------------------------

    def scopes(self, ctx: AccessContext) -> tuple[Scope, ...]:
        """The clinical scopes of `ctx` that can grant anything (a `patient/` scope needs a
        launch patient)."""
        return tuple(
            s for s in parse_scopes(ctx.scopes) if s.level != "patient" or ctx.patient is not None
        )

    def restriction(self, ctx: AccessContext, letters: frozenset[str], type: str) -> Restriction:
        """What the scopes granting one of `letters` on `type` let `ctx` reach."""
        key = (
            ctx.scopes,
            ctx.patient,
            ctx.fhir_user,
            ctx.role,
            ctx.user_patients,
            ctx.user_organizations,
            letters,
            type,
            self.registry.generation,
        )
        found = self._restrictions.get(key)
        if found is None:
            found = self._compute(ctx, letters, type)
            _remember(self._restrictions, key, found)
        return found

    def _compute(self, ctx: AccessContext, letters: frozenset[str], type: str) -> Restriction:
        if type not in self.registry.resource_types:
            return NONE
        parts: list[Condition] = []
        exact = True
        for scope in self.scopes(ctx):
            if not any(scope.grants(letter, type) for letter in letters):
                continue
            reach = self._reach(ctx, scope, type, letters)
            granular = self._granular_query(scope, type)
            if reach is None or (scope.query and granular is None):
                continue  # this scope reaches none of `type`
            exact = exact and type != "Binary"
            conditions = [c for c in (reach, _as_condition(granular)) if c not in (None, EVERY)]
            if not conditions:
                return ALL
            parts.append(conditions[0] if len(conditions) == 1 else AllOf(tuple(conditions)))
        if not parts:
            return NONE
        return Restriction(parts[0] if len(parts) == 1 else AnyOf(tuple(_unique(parts))), exact)

    def _reach(
        self, ctx: AccessContext, scope: Scope, type: str, letters: frozenset[str]
    ) -> Condition | None:
        """The condition a scope's level puts on `type` (None: it reaches nothing of it;
        `EVERY`: all of it)."""
        if scope.level == "system":
            return EVERY
        patients = self._patients(ctx, scope)
        if patients is None:
            return EVERY
        if type == "Binary":  # judged on Binary.securityContext by `_in`; no search param
            return NOTHING if patients else None
        codes = self._patient_params(type)
        if codes is None:  # shared data: anyone may read it, patient/ scopes may not write
            return EVERY if letters <= SEE or scope.level != "patient" else None
        if type == "Patient" and scope.level == "user" and ctx.user_organizations is not None:
            return _managed_by(ctx.user_organizations)
        if not patients:
            return None
        conditions: list[Condition] = [
            ReferenceCondition(code, "Patient", id) for code in codes for id in sorted(patients)
        ]
        if type == "Patient":
            conditions.insert(0, IdCondition(tuple(sorted(patients))))
        return conditions[0] if len(conditions) == 1 else AnyOf(tuple(conditions))

    def _patients(self, ctx: AccessContext, scope: Scope) -> frozenset[str] | None:
        """The patients a scope reaches (None: every patient)."""
        if scope.level == "patient":
            return frozenset({ctx.patient}) if ctx.patient else frozenset()
        return user_patients(ctx)

    def _patient_params(self, type: str) -> tuple[str, ...] | None:
        """The reference parameters that tie a resource of `type` to a patient (None: the
        type is shared data, tied to no patient)."""
        if type in self._members:
            return compartments.membership_params(self.registry, "Patient", type)
        linked = tuple(
            code
            for code in PATIENT_LINKED
            if (p := self.registry.param(type, code)) is not None
            and p.type == "reference"
            and "Patient" in self.registry.targets(p, type)
        )
        return linked or None

    def _granular_query(self, scope: Scope, type: str) -> SearchQuery | None:
        """A granular scope's query parsed for `type` (None when it does not parse or needs
        what `matching` cannot decide: such a scope grants nothing)."""
        if not scope.query:
            return None
        key = (scope.query, type, self.registry.generation)
        if key in self._granular:
            return self._granular[key]
        parsed: SearchQuery | None = None
        try:
            query = parse_search(self.registry, (type,), list(scope.query), strict=True).query
            if all(supports(c) for clause in query.clauses for c in clause):
                parsed = query
            else:
                log.warning("granular scope query on %s is not supported: it grants nothing", type)
        except BadRequest as error:
            log.warning(
                "granular scope query on %s does not parse (%s): it grants nothing",
                type,
                error.diagnostics,
            )
        _remember(self._granular, key, parsed)
        return parsed

    # -- one resource ------------------------------------------------------------------

    def _in(
        self,
        ctx: AccessContext,
        found: Restriction,
        type: str,
        resource: dict[str, Any],
        letter: str | None,
    ) -> bool:
        """Whether `resource` is within `found` (for Binary: its securityContext's patient)."""
        condition = found.condition
        assert condition is not None
        if type == "Binary" and not found.exact:
            return self._binary_in(ctx, resource, SEE if letter is None else frozenset(letter))
        values = self.indexer.values_of(resource, params_of(condition))
        return matches(condition, resource, values)

    def _binary_in(
        self, ctx: AccessContext, resource: dict[str, Any], letters: frozenset[str]
    ) -> bool:
        reference = (resource.get("securityContext") or {}).get("reference")
        target = reference.split("/") if isinstance(reference, str) else []
        for scope in self.scopes(ctx):
            if not any(scope.grants(letter, "Binary") for letter in letters) or scope.query:
                continue
            patients = None if scope.level == "system" else self._patients(ctx, scope)
            if patients is None or (
                len(target) == 2 and target[0] == "Patient" and target[1] in patients
            ):
                return True
        return False

    # -- chains and _has ---------------------------------------------------------------

    def _restrict_inner(self, ctx: AccessContext, query: SearchQuery) -> SearchQuery:
        """`query` with each chain or `_has` split per inner type and each restricted."""
        if not any(
            isinstance(c, ChainCondition | HasCondition | AllOf | AnyOf | Not)
            for clause in query.clauses
            for c in clause
        ):
            return query
        clauses = tuple(tuple(self._inner(ctx, c) for c in clause) for clause in query.clauses)
        return replace(query, clauses=clauses)

    def _inner(self, ctx: AccessContext, c: Condition) -> Condition:
        match c:
            case AllOf() | AnyOf():
                return replace(c, conditions=tuple(self._inner(ctx, x) for x in c.conditions))
            case Not():
                return Not(self._inner(ctx, c.condition))
            case ChainCondition() | HasCondition():
                inner = c.query
                if len(inner.types) <= 1:
                    return replace(c, query=self.restrict(ctx, inner))
                split = [
                    replace(c, query=self.restrict(ctx, replace(inner, types=(t,))))
                    for t in inner.types
                ]
                return AnyOf(tuple(split))
        return c


def user_patients(ctx: AccessContext) -> frozenset[str] | None:
    """The patients a `user/` scope reaches (None: every patient).

    A user who is a Patient reaches their own compartment; a practitioner (or a user with
    the admin role) every patient (`auth_clinician_scope` "all"), or `ctx.user_patients`
    when set (`auth_clinician_scope` "organization": the patients of the organizations the
    practitioner works for, filled in by `fhir_server.auth.reach` when the token is
    verified; a Patient itself is judged by its managingOrganization, so that a new one
    can be registered); anyone else (a RelatedPerson, a user without a FHIR identity) no
    patient."""
    kind, _, id = (ctx.fhir_user or "").partition("/")
    if kind == "Patient" and id:
        return frozenset({id})
    if kind in ("Practitioner", "PractitionerRole") or ctx.role == "admin":
        return ctx.user_patients
    return frozenset()


def _managed_by(organizations: frozenset[str]) -> Condition | None:
    """Patients whose managingOrganization is one of `organizations` (None: no org): a
    practitioner limited to their organizations reaches these, and may register a patient
    with one of them but not move one elsewhere."""
    conditions: list[Condition] = [
        ReferenceCondition("organization", "Organization", ref.removeprefix("Organization/"))
        for ref in sorted(organizations)
    ]
    if not conditions:
        return None
    return conditions[0] if len(conditions) == 1 else AnyOf(tuple(conditions))


def _as_condition(query: SearchQuery | None) -> Condition | None:
    if query is None:
        return None
    parts: list[Condition] = [c[0] if len(c) == 1 else AnyOf(c) for c in query.clauses]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _with_clause(query: SearchQuery, clause: Clause) -> SearchQuery:
    if clause in query.clauses:  # restricted already (an inner query is restricted twice)
        return query
    return replace(query, clauses=(*query.clauses, clause))


def _unique(conditions: Iterable[Condition | None]) -> list[Condition]:
    return list(dict.fromkeys(c for c in conditions if c is not None))


def _remember(cache: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    cache[key] = value
    if len(cache) > _CACHE:
        cache.popitem(last=False)


def _refusal(action: str, type: str | None, letters: Sequence[str] | frozenset[str]) -> str:
    wanted = letter_string(letters)
    where = type or "*"
    return (
        f"{action} on {type or 'the system'} is not within the granted scopes "
        f"(it needs e.g. user/{where}.{wanted} or patient/{where}.{wanted})"
    )
