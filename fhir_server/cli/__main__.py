"""`python -m fhir_server.cli`: the same command as `fhir-server`."""

from fhir_server.cli import app

app()
