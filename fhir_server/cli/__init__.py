"""The `fhir-server` command: every subcommand of the server, one module each.

- `serve` (serve.py): the HTTP server and its background duties;
- `load`, `export` (load.py): NDJSON and Bundles in, NDJSON out, through the service;
- `deidentify` (deidentify.py): de-identify NDJSON files (Safe Harbor, date shift);
- `reindex` (reindex.py): recompute the search index after a new SearchParameter;
- `blobs gc` (blobs.py): find or remove Binary content that no version references;
- `bulk export` (bulk.py): a Bulk Data client, from this or another server into a folder;
- `keys generate`, `keys rotate` (keys.py): the master keys of encryption at rest;
- `terminology ...` (terminology.py): import LOINC and SNOMED CT releases;
- `hl7 ...` (hl7.py): the HL7 v2 inbox's dead letters, replay, and an MLLP sender;
- `auth ...` (auth.py): SMART clients, signing keys, and a token for curl;
  `auth user ...` (auth_users.py): the users who sign in to approve SMART apps;
- `cds ...` (cds.py): the CDS clients allowed to call the CDS services, and card feedback;
- `audit verify`, `audit export` (audit.py): check the audit trail's hash chain, export it.

Commands build what they need through `fhir_server.assembly` (`open_service`), and import
it when they run, so that `--help` and the light commands start quickly.
"""

from __future__ import annotations

import typer

from fhir_server.cli import (
    audit,
    auth,
    auth_users,
    blobs,
    bulk,
    cds,
    deidentify,
    hl7,
    keys,
    load,
    reindex,
    serve,
    terminology,
)

app = typer.Typer(
    help="FHIR R4 interoperability server", no_args_is_help=True, add_completion=False
)
app.add_typer(terminology.app, name="terminology")
app.add_typer(hl7.app, name="hl7")
app.add_typer(blobs.app, name="blobs")
app.add_typer(bulk.app, name="bulk")
app.add_typer(keys.app, name="keys")
auth.app.add_typer(auth_users.user_app, name="user")
app.add_typer(auth.app, name="auth")
app.add_typer(cds.app, name="cds")
app.add_typer(audit.app, name="audit")
app.command()(serve.serve)
app.command()(load.load)
app.command()(load.export)
app.command(name="reindex")(reindex.reindex_command)
app.command()(deidentify.deidentify)
