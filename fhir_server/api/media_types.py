"""State-changing requests must say they carry FHIR (or HL7 v2): 415 for anything else.

A web page can make a browser send a cross-site POST without asking first (no CORS
preflight) only with the media types an HTML form uses: `application/x-www-form-urlencoded`,
`multipart/form-data` and `text/plain` (or no Content-Type at all). So a POST, PUT or PATCH
is accepted only with a media type documented for it, checked before the body is read:

- FHIR resources: `application/fhir+json` or `application/fhir+xml` (and the other JSON and
  XML types and `+json`/`+xml` suffixes that `content.parse_body` reads);
- `PATCH`: also `application/json-patch+json` (a FHIRPath Patch is a Parameters resource);
- form posts only where FHIR defines them: `POST [base]/_search`, `[type]/_search` and
  `[compartment]/_search` (https://hl7.org/fhir/R4/http.html#search);
- `POST [base]/Binary` and `PUT [base]/Binary/[id]`: any other media type but a form's
  (the file itself, https://hl7.org/fhir/R4/binary.html#rest);
- `POST /hl7v2`: `x-application/hl7-v2+er7`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from fhir_server.api.asgi import header, send_error
from fhir_server.api.content import FORM_TYPE, JSON_TYPES, PATCH_TYPE, XML_TYPES
from fhir_server.api.raw_binary import is_upload
from fhir_server.errors import UnsupportedMediaType

_WRITES = frozenset({"POST", "PUT", "PATCH"})


def _is_fhir(media: str) -> bool:
    return media in JSON_TYPES or media in XML_TYPES or media.endswith(("+json", "+xml"))


class MediaTypeMiddleware:
    """415 (OperationOutcome) for a write under `fhir_prefix` or to `hl7_path` whose
    Content-Type is not one documented for it."""

    def __init__(self, app: ASGIApp, fhir_prefix: str, hl7_path: str, hl7_media: str) -> None:
        self.app = app
        self.fhir_prefix = fhir_prefix
        self.hl7_path = hl7_path
        self.hl7_media = hl7_media

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _WRITES:
            raw = header(scope.get("headers"), b"content-type") or b""
            media = raw.decode("latin-1").split(";")[0].strip().lower()
            problem = self._problem(scope["method"], scope["path"], media)
            if problem is not None:
                await send_error(
                    send, UnsupportedMediaType(problem, expression=("Content-Type",)), close=True
                )
                return
        await self.app(scope, receive, send)

    def _problem(self, method: str, path: str, media: str) -> str | None:
        """Why `media` is refused for `method path`, or None when it is accepted."""
        shown = f"Content-Type '{media}'" if media else "A missing Content-Type"
        if path == self.hl7_path:
            return (
                None
                if media == self.hl7_media
                else (f"{shown} is not accepted on {path}; send {self.hl7_media}")
            )
        if not (path == self.fhir_prefix or path.startswith(self.fhir_prefix + "/")):
            return None
        if _is_fhir(media) or (method == "PATCH" and media == PATCH_TYPE):
            return None
        if is_upload(method, path.removeprefix(self.fhir_prefix), media):
            return None  # a file sent as a Binary's raw content
        if media == FORM_TYPE and method == "POST" and path.rstrip("/").endswith("/_search"):
            return None
        where = "only on POST .../_search" if media == FORM_TYPE else "here"
        return (
            f"{shown} is not accepted {where}; send application/fhir+json or "
            "application/fhir+xml"
            + (" (or application/json-patch+json)" if method == "PATCH" else "")
        )
