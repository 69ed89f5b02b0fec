"""The audit trail: an AuditEvent (IHE BALP) for every exchange over HTTP and HL7 v2.

- `records.Exchange`: what the HTTP adapter (and the HL7 v2 listener, through the
  assembly) hands over per exchange: kind, method, path, status, network address, time,
  and the `interactions.observed.Observed` record of who asked and what was touched.
- `trail.AuditTrail`: the per-process queue and the task that writes it in batches
  after the responses (at least every `FHIR_AUDIT_FLUSH_SECONDS`, and at shutdown).
  `record(exchange)` is the middleware's hook; `record_read(ctx, type, id, status, peer,
  found)` records a read by id answered outside the middleware, told in parts.
- `events.EventBuilder`: `Exchange`s as FHIR R4 AuditEvents (`build_many`), and a
  window's reads in the read journal's compact form (`JournalWindow`, `journal_window`).
- `journal`: reads made durable each window and stored every `FHIR_AUDIT_INDEX_SECONDS`
  (and before each search of AuditEvents: `AuditTrail.catch_up`) as merged AuditEvents
  (one per agent, interaction, status and patient bucket).
- `chain`: every batch hash-chained to the previous one (optionally HMAC-signed);
  `chain.verify` for `fhir-server audit verify`.
- `guard.AuditGuard`: nobody writes AuditEvents through the API; only audit roles read.
- `access_log`: `Patient/[id]/$access-log`.

`install(service, ...)` plugs the guard and the operation into a service; the assembly
builds the trail. The core never imports this package.
"""

from __future__ import annotations

from fhir_server.audit.access_log import access_log_operation
from fhir_server.audit.guard import AuditGuard
from fhir_server.interactions.service import FhirService


def install(service: FhirService, *, open_reads: bool = False) -> None:
    """Guard AuditEvents in the service's policy and answer `$access-log`; `open_reads`
    when authorization is off (every caller may read everything)."""
    service.policy = AuditGuard(service.policy, service.resource_types, open_reads=open_reads)
    service.add_operation(access_log_operation(open_reads))


__all__ = ["install"]
