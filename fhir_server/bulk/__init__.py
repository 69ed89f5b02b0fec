"""Bulk Data Access 2.0 export (https://hl7.org/fhir/uv/bulkdata/export.html).

A plug-in: `install(service, options)` (called by the assembly) registers the kick-off
operations, the status and file endpoints and the background duty on the service's seams.

- Kick-off (`kickoff`): `[base]/$export`, `Patient/$export`, `Group/[id]/$export` (GET or
  POST, `Prefer: respond-async`) checks the parameters and the caller's scopes, fixes the
  transactionTime and the cohort (a Group's members or characteristic, evaluated now), saves
  the job in the database (`jobs`) and answers 202 with the status URL. Any server process
  may take a kick-off; the leader runs the job.
- The job (`runner`) runs as a duty on the leader, one at a time, type by type: a scan of
  the type consistent to transactionTime (`scan`), filtered by the request and the
  caller's access policy, written as NDJSON files (split at a size) into the engine's
  "exports" byte store, so every process serves them. After each type the job's state is
  saved; a job cut short (a crash, a lost lease) resumes at the type it was writing.
- Status and files (`status`): `$export-poll-status?_jobId=` answers 202 with X-Progress
  while running, the manifest when done, and cancels on DELETE; `$export-file` streams a
  file to the client that started the job. Finished jobs expire after the retention time.

Transforms (`BulkExport.add_transform`) are named functions from a resource to a resource
(or None to leave it out), e.g. a de-identification profile, chosen at kick-off with
`_deidentify=<name>`.
"""

from fhir_server.bulk.plugin import BulkExport, Options, install

__all__ = ["BulkExport", "Options", "install"]
