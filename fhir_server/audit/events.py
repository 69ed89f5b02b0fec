"""AuditEvent resources (FHIR R4) shaped after the IHE Basic Audit Log Patterns (BALP).

https://hl7.org/fhir/R4/auditevent.html and https://profiles.ihe.net/ITI/BALP/ -- one
event per exchange: `type` rest (or user authentication, or an HL7 v2 import) with the
restful interaction as `subtype`, `action` C/R/U/D/E, `recorded`, `outcome` (0 success,
4 minor failure: a 4xx, 8 serious failure: a 5xx), the agents (the user with their
`fhirUser`, the client app, the network address), `source` this server, and an `entity`
per resource touched plus one per patient whose data it was (role 1, Patient), and for
searches the query, base64 encoded.

`build_many` coalesces: the reads (and vreads) of one flush window by the same agent (user,
client app, network address) with the same HTTP status become ONE event, with an entity
per resource read (and its patient) and `period` the window's first and last access
(BALP allows many entities per event). Everything else stays one event per exchange.
The audit trail does not store read events per window: a `JournalWindow` holds a window's
reads in the read journal's compact form (the trail adds each as it is recorded;
`journal_window` adds the rest), and `journal.Merger` builds their events over a longer
interval, the same way.
"""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from fhir_server.audit.records import Exchange
from fhir_server.context import AccessContext
from fhir_server.errors import FhirError
from fhir_server.interactions import routes
from fhir_server.search.compartments import membership_params
from fhir_server.search.extract import Indexer
from fhir_server.search.registry import SearchRegistry
from fhir_server.search.values import ReferenceValue
from fhir_server.storage.base import StoredResource

EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
IHE_EVENTS = "urn:ihe:event-type-code"
V2_EVENTS = "http://terminology.hl7.org/CodeSystem/v2-0003"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_IDS = "urn:fhir-server:client-id"
USER_IDS = "urn:fhir-server:subject"

REST = {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"}
AUTHENTICATION = {"system": DCM, "code": "110114", "display": "User Authentication"}
LOGIN = {"system": DCM, "code": "110122", "display": "Login"}
ACCESS_TOKEN = {"system": IHE_EVENTS, "code": "ITI-71", "display": "Get Access Token"}
IMPORT = {"system": DCM, "code": "110107", "display": "Import"}
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
}  # everything else (search, operation, batch/transaction, sign-in): E, execute
log = logging.getLogger("fhir_server.audit")
HL7_OUTCOMES = {"AA": "0", "CA": "0", "AE": "4", "CE": "4", "AR": "8", "CR": "8"}
COALESCED = frozenset({"read", "vread"})  # interactions merged per agent within a window
MAX_COALESCED = 1000  # accesses per coalesced event at most (keeps each event small)
# Coalesced reads are split by the patient they concern into this many buckets (`bucket`):
# the events of one bucket name a fixed share of the patients, so the read journal can
# merge a busy agent's reads over many windows and still name each patient once.
READ_BUCKETS = 16
PATIENTS_CACHED = 10_000  # resource versions whose patients are remembered
_READ = next(r for r in routes.ROUTES if r.interaction == "read")


def bucket(ref: str) -> int:
    """The read bucket of a reference ("Patient/1"): the same in every process."""
    return zlib.crc32(ref.encode()) % READ_BUCKETS


def outcome(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def instant(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class EventBuilder:
    """Turns `Exchange`s into AuditEvent dicts: `source` names this server (`site`)."""

    def __init__(self, registry: SearchRegistry, indexer: Indexer, site: str) -> None:
        self.registry = registry
        self.indexer = indexer
        self.site = site
        self._patient_params: dict[str, tuple[str, ...]] = {}
        self._patients: dict[tuple[str, str, int, str], tuple[str, ...]] = {}

    def build_many(self, exchanges: Iterable[Exchange]) -> list[dict[str, Any]]:
        """The events of one flush window, in the order of each event's first exchange:
        reads coalesced per (interaction, status, agent, address), the rest one each.
        Should building an event fail (a bug), bare events that still say who, when and
        how each exchange ended, rather than a batch that never gets written."""
        groups: dict[tuple[object, ...], list[Exchange]] = {}
        order: list[tuple[Exchange, routes.RouteMatch | None] | list[Exchange]] = []
        matches: dict[int, routes.RouteMatch | None] = {}
        for ex in exchanges:
            match = self._route(ex)
            if match is None or match.route.interaction not in COALESCED:
                order.append((ex, match))
                continue
            matches[id(ex)] = match
            key = (
                match.route.interaction,
                ex.status,
                ex.address,
                self._bucket(ex, match),
                *_who(ex),
            )
            group = groups.get(key)
            if group is None or len(group) >= MAX_COALESCED:
                group = groups[key] = []
                order.append(group)
            group.append(ex)
        events: list[dict[str, Any]] = []
        for item in order:
            try:
                if isinstance(item, tuple):
                    events.append(self.build(item[0], item[1], matched=True))
                else:
                    events.append(self._build_group(item, [matches[id(ex)] for ex in item]))
            except Exception:
                group = [item[0]] if isinstance(item, tuple) else item
                log.exception(
                    "audit: %d event(s) of %s exchanges built bare", len(group), group[0].kind
                )
                events.extend(self.bare(ex) for ex in group)
        return events

    def _build_group(
        self, group: Sequence[Exchange], matches: Sequence[routes.RouteMatch | None]
    ) -> dict[str, Any]:
        event = self.build(group[0], matches[0], matched=True, entities=False)
        if len(group) > 1:
            event["recorded"] = instant(max(ex.recorded for ex in group))
            event["period"] = {
                "start": instant(min(ex.recorded for ex in group)),
                "end": event["recorded"],
            }
        entities = self._entities(list(zip(group, matches, strict=True)))
        if entities:
            event["entity"] = entities
        return event

    def build(
        self,
        ex: Exchange,
        match: routes.RouteMatch | None = None,
        *,
        matched: bool = False,
        entities: bool = True,
    ) -> dict[str, Any]:
        """The event of one exchange (`match`: its route, when already looked up)."""
        event: dict[str, Any] = {"resourceType": "AuditEvent"}
        if not matched:
            match = self._route(ex)
        if ex.kind == "rest":
            event["type"] = REST
            if match is not None:
                event["subtype"] = [self._subtype(match, ex)]
            code = "E" if match is None else ACTIONS.get(match.route.interaction, "E")
            event["action"] = code
        elif ex.kind == "hl7":
            event["type"] = IMPORT
            message = (ex.detail or "").split(" ")[0]
            trigger = message.split("^")[1] if "^" in message else message
            event["subtype"] = [{"system": V2_EVENTS, "code": trigger or "unknown"}]
            event["action"] = "E"
        else:
            event["type"] = AUTHENTICATION
            event["subtype"] = [LOGIN if ex.kind == "login" else ACCESS_TOKEN]
            event["action"] = "E"
        event["recorded"] = instant(ex.recorded)
        event["outcome"] = outcome(ex.status)
        event["outcomeDesc"] = f"HTTP {ex.status}" if ex.kind != "hl7" else (ex.detail or "")
        event["agent"] = self._agents(ex)
        event["source"] = {
            "site": self.site,
            "observer": {"display": self.site},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        }
        if entities:
            found = self._entities([(ex, match)])
            if found:
                event["entity"] = found
        return event

    def bare(self, ex: Exchange) -> dict[str, Any]:
        """An event with only what cannot fail: type, action, time, outcome, source."""
        return {
            "resourceType": "AuditEvent",
            "type": REST if ex.kind == "rest" else IMPORT if ex.kind == "hl7" else AUTHENTICATION,
            "action": "E",
            "recorded": instant(ex.recorded),
            "outcome": outcome(ex.status),
            "outcomeDesc": f"HTTP {ex.status}",
            "agent": [{"name": "unknown", "requestor": True}],
            "source": {"site": self.site, "observer": {"display": self.site}},
        }

    def _bucket(self, ex: Exchange, match: routes.RouteMatch) -> int:
        """The bucket of a read: by its patient (the resource's first), else the resource."""
        try:
            found = ex.observed.resources if ex.observed else []
            rec = found[0] if found else None
            if rec is None:
                return bucket(f"{match.type}/{match.id}")
            if rec.type == "Patient":
                return bucket(f"Patient/{rec.id}")
            patients = self._patients_of(rec)
            return bucket(patients[0] if patients else f"{rec.type}/{rec.id}")
        except Exception:  # building its event will fail too, and leave a bare event
            return -1

    # -- type and subtype --------------------------------------------------------------

    def _route(self, ex: Exchange) -> routes.RouteMatch | None:
        if ex.kind != "rest":
            return None
        method = "GET" if ex.method == "HEAD" else ex.method
        parts = ex.path.split("/")
        if (  # the common case, a read by id, without trying every route
            method == "GET"
            and len(parts) == 2
            and parts[0] in self.registry.resource_types
            and parts[1]
            and not parts[1].startswith(("_", "$"))
        ):
            return routes.RouteMatch(_READ, parts[0], parts[1])
        try:
            return routes.match(method, ex.path, self.registry.resource_types)
        except FhirError:
            return None

    @staticmethod
    def _subtype(match: routes.RouteMatch, ex: Exchange) -> dict[str, str]:
        coding = {"system": RESTFUL, "code": match.route.interaction}
        if match.op:
            coding["display"] = match.op
        return coding

    # -- who ---------------------------------------------------------------------------

    def _agents(self, ex: Exchange) -> list[dict[str, Any]]:
        seen = ex.observed
        ctx: AccessContext | None = seen.context if seen else None
        network = {"address": ex.address, "type": "2"} if ex.address else None
        user: dict[str, Any] = {
            "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
            "requestor": True,
        }
        if ctx is not None and not ctx.system and ctx.subject != "anonymous":
            user["altId"] = ctx.subject
            user["name"] = ctx.subject
            if ctx.fhir_user:
                user["who"] = {"reference": ctx.fhir_user}
            elif ctx.client_id and ctx.subject == ctx.client_id:  # a backend service
                user["who"] = {"identifier": {"system": CLIENT_IDS, "value": ctx.client_id}}
            else:
                user["who"] = {"identifier": {"system": USER_IDS, "value": ctx.subject}}
            if ctx.role:
                user["role"] = [{"text": ctx.role}]
        elif ctx is not None:
            user["name"] = ctx.subject  # system (HL7 v2 feed) or anonymous (auth off)
        elif seen is not None and seen.user:
            user["name"] = user["altId"] = seen.user  # a sign-in attempt's user name
        else:
            user["name"] = "unauthenticated"
        if network:
            user["network"] = network
        agents = [user]
        client = ctx.client_id if ctx is not None else seen.client if seen else None
        if client:
            agents.append(
                {
                    "type": {
                        "coding": [{"system": DCM, "code": "110150", "display": "Application"}]
                    },
                    "who": {"identifier": {"system": CLIENT_IDS, "value": client}},
                    "name": client,
                    "requestor": False,
                }
            )
        return agents

    # -- what --------------------------------------------------------------------------

    def _entities(
        self, exchanges: Sequence[tuple[Exchange, routes.RouteMatch | None]]
    ) -> list[dict[str, Any]]:
        """The entities of one exchange, or of a coalesced group: each resource version
        once, then each patient once, then (one exchange) its query or HL7 v2 message."""
        out: list[dict[str, Any]] = []
        done: set[tuple[str, int | None]] = set()
        patients: dict[str, None] = {}
        for ex, match in exchanges:
            objects, theirs = self.touched(ex, match)
            for ref, version in objects:
                if (ref, version) not in done:  # a group: each version read once
                    done.add((ref, version))
                    out.append(object_entity(ref, version))
            patients.update(dict.fromkeys(theirs))
        out.extend(patient_entity(p) for p in patients)
        if len(exchanges) != 1:
            return out
        ex, match = exchanges[0]
        if match is not None and match.route.interaction.startswith("search") and ex.query:
            out.append(
                {
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                    "query": base64.b64encode(ex.query).decode("ascii"),
                }
            )
        if ex.kind == "hl7" and ex.detail:
            out.append(
                {
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
                    "what": {"identifier": {"value": ex.detail.split(" ")[-1]}},
                    "name": ex.detail,
                }
            )
        return out

    def touched(
        self, ex: Exchange, match: routes.RouteMatch | None
    ) -> tuple[list[tuple[str, int | None]], list[str]]:
        """What one exchange touched: the resource versions (`Type/id`, version; None when
        a refused or failed request named one it did not return), and the patients whose
        data they were (a Patient itself, or those a resource's compartment parameters
        name), each once. AuditEvents read are left out: reading the trail is audited by
        its request, not by each event it returned."""
        objects: list[tuple[str, int | None]] = []
        patients: dict[str, None] = {}
        seen_here: set[str] = set()
        for rec in ex.observed.resources if ex.observed else ():
            if rec.type == "AuditEvent":
                continue
            ref = f"{rec.type}/{rec.id}"
            if ref in seen_here:  # each resource once (history: the first version)
                continue
            seen_here.add(ref)
            if rec.type == "Patient":
                patients[ref] = None
                continue
            objects.append((ref, rec.version))
            patients.update(dict.fromkeys(self._patients_of(rec)))
        if match is not None and match.type and match.id and match.type != "AuditEvent":
            ref = f"{match.type}/{match.id}"
            if ref not in seen_here:  # refused or failed: what it asked for
                if match.type == "Patient":
                    patients[ref] = None
                else:
                    objects.append((ref, None))
        return objects, list(patients)

    def journal_window(
        self, exchanges: Iterable[Exchange], window: JournalWindow | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """A flush window for the read journal (`journal`): the events to store now (every
        exchange but reads and vreads, as `build_many` gives them), and the reads as one
        journal entry, or None when there were none (see `JournalWindow`); `window` holds
        the reads the trail added as they were recorded, the exchanges join it."""
        window = window if window is not None else JournalWindow(self)
        others = [ex for ex in exchanges if not window.add(ex)]
        return self.build_many(others), window.payload()

    def plain_read(self, ex: Exchange) -> tuple[tuple[Any, ...], tuple[str, ...]] | None:
        """`touched` for a read by id that returned the resource it named (most reads),
        else None; as tuples of strings and numbers (which the garbage collector stops
        tracking: a window holds thousands)."""
        seen = ex.observed
        if ex.kind != "rest" or seen is None or len(seen.resources) != 1 or ex.method != "GET":
            return None
        rec = seen.resources[0]
        try:
            if ex.path != f"{rec.type}/{rec.id}" or rec.type == "AuditEvent":
                return None
            if rec.type == "Patient":
                return (), (ex.path,)
            return ((ex.path, rec.version),), self._patients_of(rec)
        except Exception:  # the general path builds it, or a bare event
            return None

    def _patients_of(self, rec: StoredResource) -> tuple[str, ...]:
        """The patients whose compartment `rec` is in (by its own reference parameters)."""
        if rec.deleted or not rec.data:
            return ()
        key = (rec.type, rec.id, rec.version, rec.last_updated)  # a version never changes
        known = self._patients.get(key)
        if known is None:
            known = self._patients[key] = tuple(self._find_patients(rec))
            if len(self._patients) > PATIENTS_CACHED:
                del self._patients[next(iter(self._patients))]  # the oldest entry
        return known

    def _find_patients(self, rec: StoredResource) -> list[str]:
        codes = self._patient_params.get(rec.type)
        if codes is None:
            codes = membership_params(self.registry, "Patient", rec.type)
            self._patient_params[rec.type] = codes
        if not codes:
            return []
        values = self.indexer.values_of(orjson.loads(rec.data), codes)
        return [
            f"Patient/{v.target_id}"
            for v in values
            if isinstance(v, ReferenceValue) and v.target_type == "Patient"
        ]


def _who(ex: Exchange) -> tuple[object, ...]:
    """Who asked, as far as an event's agents tell them apart."""
    seen = ex.observed
    ctx = seen.context if seen else None
    if ctx is not None:
        return (ctx.subject, ctx.fhir_user, ctx.client_id, ctx.role, ctx.system)
    return (None, seen.user if seen else None, seen.client if seen else None)


_TYPES = {
    code: {"system": ENTITY_TYPE, "code": code, "display": display}
    for code, display in (("1", "Person"), ("2", "System Object"))
}
_ROLES = {
    code: {"system": OBJECT_ROLE, "code": code, "display": display}
    for code, display in (("1", "Patient"), ("4", "Domain Resource"))
}


def object_entity(ref: str, version: int | None) -> dict[str, Any]:
    """The entity of a resource touched (role 4, Domain Resource; its version in `detail`)."""
    return _entity(ref, "2", "4", version)


def patient_entity(ref: str) -> dict[str, Any]:
    """The entity of a patient whose data it was (role 1, Patient)."""
    return _entity(ref, "1", "1", None)


def _entity(ref: str, type_code: str, role_code: str, version: int | None) -> dict[str, Any]:
    """An entity; its `type` and `role` codings are shared, never-changed dicts (an event of
    a busy agent names thousands of entities)."""
    entity: dict[str, Any] = {
        "what": {"reference": ref},
        "type": _TYPES[type_code],
        "role": _ROLES[role_code],
    }
    if version is not None:
        entity["detail"] = [{"type": "version", "valueString": str(version)}]
    return entity


class JournalWindow:
    """The reads of one flush window in the read journal's compact form: `heads`, the event
    of each agent, interaction and status without entities, and `reads`, one `(head, time,
    objects, patients)` per read (`EventBuilder.touched`). The trail adds each read as it
    is recorded (after its response), while what it touched is still at hand; a window
    holds no request object, only strings and numbers."""

    __slots__ = ("_head_of", "builder", "heads", "reads")

    def __init__(self, builder: EventBuilder) -> None:
        self.builder = builder
        self.heads: list[dict[str, Any]] = []
        self.reads: list[tuple[Any, ...]] = []
        self._head_of: dict[tuple[object, ...], int] = {}

    def add(self, ex: Exchange) -> bool:
        """Add `ex` if it is a read or vread (True), else leave it (False); a read whose
        event cannot be built (a bug) is left too, for `build_many` to build bare."""
        read = self.builder.plain_read(ex)  # the common case, without the route match
        if read is not None:
            head = self._head_of.get(("read", ex.status, ex.address, *_who(ex)))
            if head is not None:
                self.reads.append((head, ex.recorded, *read))
                return True
        if ex.kind != "rest" or ex.method not in ("GET", "HEAD"):  # no read: left at once
            return False
        builder = self.builder
        match = builder._route(ex)
        if match is None or match.route.interaction not in COALESCED:
            return False
        try:
            key = (match.route.interaction, ex.status, ex.address, *_who(ex))
            head = self._head_of.get(key)
            if head is None:
                self.heads.append(builder.build(ex, match, matched=True, entities=False))
                head = self._head_of[key] = len(self.heads) - 1
            objects, patients = builder.touched(ex, match)
        except Exception:
            log.exception("audit: the event of a %s exchange built bare", ex.kind)
            return False
        self.reads.append((head, ex.recorded, tuple(objects), tuple(patients)))
        return True

    def payload(self) -> dict[str, Any] | None:
        """The journal entry (None: no reads)."""
        return {"heads": self.heads, "reads": self.reads} if self.reads else None
