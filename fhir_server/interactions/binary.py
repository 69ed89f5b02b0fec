"""Binary content as raw bytes, kept in the blob store.

https://hl7.org/fhir/R4/binary.html#rest -- "When a read request is made for the Binary
resource and the Accept header is not a FHIR content type, the server SHOULD return the
content in native form"; "When binary data is written to the server (create/update - POST
or PUT), the data is accepted as is and treated as the binary content of a Binary, including
when the content type is "application/xml" or "application/json"" (for a non-FHIR
Content-Type). The `X-Security-Context` header carries `Binary.securityContext` both ways.

How it is kept: raw bytes go to the blob store (named by SHA-256) before the transaction
that writes the Binary commits; the stored Binary holds no `data` but, in `meta.extension`
(Binary has no `extension` of its own), `BLOB_EXTENSION`: an Attachment with `url`
`blob:sha256:<hex>`, `size` and the SHA-1 `hash`,
so large files never sit in a JSON column and each version keeps its own blob. Only the
raw path may make that reference: a JSON body claiming one is refused, so no client can
point a Binary at content it did not upload. A JSON read puts `data` back (base64) up to
`max_inline_bytes`, beyond which it answers 413 asking for the raw bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.errors import BadRequest, NotFound, PayloadTooLarge
from fhir_server.interactions.common import version_headers
from fhir_server.interactions.request import Request, Response
from fhir_server.model import fhirjson
from fhir_server.storage.base import HistoryQuery
from fhir_server.storage.blobs import BlobRef, BlobStore

if TYPE_CHECKING:
    from fhir_server.storage.base import Storage, StoredResource

BLOB_EXTENSION = "urn:fhir-server:StructureDefinition:binary-blob"
BLOB_URL = "blob:sha256:"
SECURITY_HEADER = "x-security-context"
FHIR_MEDIA = (
    "application/fhir+json",
    "application/fhir+xml",
    "application/json+fhir",
    "application/xml+fhir",
)
DEFAULT_INLINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawContent:
    """A response body of raw bytes: the adapter streams `chunks()` with this media type."""

    content_type: str
    size: int
    chunks: AsyncIterator[bytes]


def is_fhir_media(media: str) -> bool:
    media = media.split(";")[0].strip().lower()
    return media in FHIR_MEDIA or media.startswith("application/fhir+")


def wants_raw(accept: str | None) -> bool:
    """A read of a Binary answers raw bytes when Accept names a media type but no FHIR
    format (`*/*` or no Accept: the resource as FHIR JSON, as for every other type)."""
    if not accept:
        return False
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    fhir_like = ("json", "xml", "application/json", "application/xml", "text/xml")
    if any(is_fhir_media(kind) or kind in fhir_like for kind in kinds):  # not ld+json, svg+xml
        return False
    return any(kind not in ("*/*", "") for kind in kinds)


def blob_resource(
    content_type: str, ref: BlobRef, security_context: str | None, id: str | None = None
) -> dict[str, Any]:
    """The Binary that a raw upload of `ref` stores (validated like any other write)."""
    resource: dict[str, Any] = {"resourceType": "Binary"}
    if id is not None:
        resource["id"] = id
    resource["contentType"] = content_type
    if security_context:
        resource["securityContext"] = {"reference": security_context}
    resource["meta"] = {"extension": [{"url": BLOB_EXTENSION, "valueAttachment": attachment(ref)}]}
    return resource


def attachment(ref: BlobRef) -> dict[str, Any]:
    return {
        "url": BLOB_URL + ref.sha256,
        "size": ref.size,
        "hash": base64.b64encode(bytes.fromhex(ref.sha1)).decode("ascii"),
    }


def blob_of(resource: dict[str, Any]) -> BlobRef | None:
    """The blob a stored Binary references, or None (its content is inline `data`)."""
    for extension in (resource.get("meta") or {}).get("extension") or ():
        if extension.get("url") == BLOB_EXTENSION:
            value = extension.get("valueAttachment") or {}
            url, size = value.get("url", ""), value.get("size", 0)
            sha1 = base64.b64decode(value.get("hash", "")).hex()
            return BlobRef(url.removeprefix(BLOB_URL), int(size), sha1)
    return None


def check_claim(resource: dict[str, Any], uploaded: BlobRef | None) -> None:
    """Refuse a Binary that names a blob other than the one this request uploaded."""
    claimed = blob_of(resource)
    if claimed is not None and (uploaded is None or claimed.sha256 != uploaded.sha256):
        raise BadRequest(
            "Binary content held by the server is written only by sending the raw bytes "
            "(a non-FHIR Content-Type); remove the extension " + BLOB_EXTENSION,
            expression=("Binary.meta.extension",),
        )
    if claimed is not None and resource.get("data") is not None:
        raise BadRequest("A Binary has either raw content or data", expression=("Binary.data",))


async def raw_response(req: Request, rec: StoredResource, blobs: BlobStore) -> Response:
    """The Binary's bytes with its own Content-Type (and its security context)."""
    resource = fhirjson.loads(rec.data)
    headers = version_headers(req, rec)
    context = (resource.get("securityContext") or {}).get("reference")
    if context:
        headers["X-Security-Context"] = context
    content_type = resource.get("contentType") or "application/octet-stream"
    ref = blob_of(resource)
    if ref is not None:
        if not await blobs.exists(ref.sha256):
            raise NotFound(f"The content of Binary/{rec.id} (sha256 {ref.sha256}) is missing")
        return Response(
            200, None, headers, raw=RawContent(content_type, ref.size, _blob(blobs, ref))
        )
    data = _decoded(resource.get("data"))
    return Response(200, None, headers, raw=RawContent(content_type, len(data), _once(data)))


async def json_response(
    req: Request, rec: StoredResource, blobs: BlobStore, max_inline_bytes: int
) -> Response:
    """The Binary as FHIR JSON with its blob put back in `data` (bounded)."""
    resource = fhirjson.loads(rec.data)
    ref = blob_of(resource)
    if ref is None:
        return Response(200, rec.data, version_headers(req, rec))
    if ref.size > max_inline_bytes:
        raise PayloadTooLarge(
            f"Binary/{rec.id} holds {ref.size} bytes, more than the {max_inline_bytes} served "
            "inline as base64; ask for the raw bytes with Accept: "
            f"{resource.get('contentType') or 'application/octet-stream'}"
        )
    content = b"".join([chunk async for chunk in _blob(blobs, ref)])
    meta = resource["meta"]
    meta["extension"] = [e for e in meta["extension"] if e.get("url") != BLOB_EXTENSION]
    if not meta["extension"]:
        del meta["extension"]
    resource["data"] = base64.b64encode(content).decode("ascii")
    return Response(200, resource, version_headers(req, rec))


async def _blob(blobs: BlobStore, ref: BlobRef) -> AsyncIterator[bytes]:
    try:
        async for chunk in blobs.read(ref.sha256):
            yield chunk
    except FileNotFoundError:
        raise NotFound(f"The content of this Binary (sha256 {ref.sha256}) is missing") from None


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _decoded(data: Any) -> bytes:
    if not data:
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("The stored Binary.data is not base64") from None


async def unreferenced(storage: Storage, older_than: float, page: int = 500) -> list[str]:
    """The blobs (SHA-256) held at least `older_than` seconds that no version of any Binary
    names: what a clean-up may remove. The age spares uploads whose Binary is not yet
    committed."""
    candidates = set(await storage.blobs().names(older_than))
    offset = 0
    while candidates:
        found = await storage.history(HistoryQuery(type="Binary", count=page, offset=offset))
        for rec in found.resources:
            ref = None if rec.deleted else blob_of(fhirjson.loads(rec.data))
            if ref is not None:
                candidates.discard(ref.sha256)
        if len(found.resources) < page:
            break
        offset += page
    return sorted(candidates)
