"""The ceiling: a bare FastAPI app that answers every Patient read with the same bytes.

It is served by uvicorn with the real server's options, so "read by id as % of the bare
ceiling" measures what our server adds on top of the framework and the ASGI server.
The bytes come from the file named by BENCH_PATIENT_FILE (a Patient read from the server).
"""

import os
from pathlib import Path

from fastapi import FastAPI, Response

FHIR_JSON = "application/fhir+json"
PATIENT = (
    Path(os.environ.get("BENCH_PATIENT_FILE", "")).read_bytes()
    if os.environ.get("BENCH_PATIENT_FILE")
    else b'{"resourceType":"Patient"}'
)

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/fhir/metadata")
def metadata() -> Response:
    return Response(b'{"resourceType":"CapabilityStatement"}', media_type=FHIR_JSON)


@app.get("/fhir/Patient/{resource_id}")
async def read_patient(resource_id: str) -> Response:
    return Response(PATIENT, media_type=FHIR_JSON)
