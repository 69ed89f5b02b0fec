"""Binary content over HTTP as raw bytes (https://hl7.org/fhir/R4/binary.html#rest).

`POST [base]/Binary` and `PUT [base]/Binary/[id]` with a Content-Type that is not a FHIR
format carry the file itself: the body streams into the blob store (one chunk in memory at
a time, under `max_binary_bytes`), then the Binary that references it is created or updated
like any other resource (validation, access policy, versioning). `X-Security-Context`
names the resource whose access rules apply (`Binary.securityContext`). A read whose Accept
is not a FHIR format gets the bytes back streamed, with the stored Content-Type.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import Response as HttpResponse
from starlette.responses import StreamingResponse

from fhir_server.api.content import FORM_TYPE, JSON_TYPES, XML_TYPES
from fhir_server.context import AccessContext
from fhir_server.errors import BadRequest
from fhir_server.interactions.binary import RawContent, blob_resource
from fhir_server.interactions.request import Response
from fhir_server.interactions.service import FhirService
from fhir_server.storage.blobs import BlobRef

_PATH = re.compile(r"^/?Binary(?:/(?P<id>[A-Za-z0-9\-.]{1,64}))?/?$")
_NOT_RAW = (FORM_TYPE, "multipart/form-data")  # HTML forms: see media_types.py
# An uploaded file is served with its own media type from the server's origin (that of the
# authorization pages too): a browser must neither run it (an HTML or SVG upload's script)
# nor guess another type for it.
_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def media(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def is_upload(method: str, path: str, content_type: str | None) -> bool:
    """Whether `method path` (relative to the FHIR base) sends a file as raw bytes."""
    kind = media(content_type)
    if method not in ("POST", "PUT") or not kind or kind in _NOT_RAW:
        return False
    if kind in JSON_TYPES or kind in XML_TYPES:  # a FHIR Binary resource
        return False  # (other +json/+xml types, e.g. image/svg+xml, are files like any other)
    found = _PATH.match(path)
    return found is not None and (found["id"] is None) == (method == "POST")


def is_binary_read(method: str, path: str) -> bool:
    found = _PATH.match(path) or re.match(r"^/?Binary/[^/]+/_history/[^/]+/?$", path)
    return method in ("GET", "HEAD") and found is not None and path.strip("/") != "Binary"


async def upload(
    request: HttpRequest, service: FhirService, caller: AccessContext, path: str
) -> tuple[dict[str, Any], BlobRef]:
    """Stream the body into the blob store; the Binary to write and the blob's reference."""
    method = request.method
    found = _PATH.match(path)
    assert found is not None
    service.policy.check(caller, "create" if method == "POST" else "update", "Binary")
    context = request.headers.get("x-security-context")
    if context is not None and not re.fullmatch(r"[A-Za-z]+/[A-Za-z0-9\-.]{1,64}", context):
        raise BadRequest(
            "X-Security-Context must be a relative reference such as Patient/123",
            expression=("X-Security-Context",),
        )
    ref = await service.blobs.put(request.stream())
    content_type = request.headers.get("content-type", "application/octet-stream")
    return blob_resource(content_type.strip(), ref, context, found["id"]), ref


def streamed(raw: RawContent, result: Response, head: bool) -> HttpResponse:
    """The raw bytes of a Binary read, streamed with their own media type and length, and
    sandboxed (no script of theirs runs in the server's origin)."""
    headers = {**result.headers, **_DOWNLOAD_HEADERS, "Content-Length": str(raw.size)}
    if head:
        return HttpResponse(status_code=result.status, headers=headers, media_type=raw.content_type)
    return StreamingResponse(
        raw.chunks, status_code=result.status, headers=headers, media_type=raw.content_type
    )
