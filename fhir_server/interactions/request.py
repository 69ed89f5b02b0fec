"""The plain request and response the interaction layer speaks; no web framework here.

The HTTP adapter (`fhir_server.api`) turns an HTTP request into a `Request`; batch and
transaction bundles turn each entry into one. Handlers return a `Response` whose body is
either stored JSON bytes (served as they are) or a dict (rendered by the adapter).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from fhir_server.context import AccessContext
from fhir_server.storage.blobs import BlobRef

if TYPE_CHECKING:
    from fhir_server.interactions.binary import RawContent


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # GET POST PUT PATCH DELETE (HEAD is served as GET)
    path: str  # relative to the FHIR base, no leading slash: "", "Patient", "Patient/1/_history"
    query: tuple[tuple[str, str], ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: Any = None  # parsed JSON (dict) or a JSON Patch list; None without a body
    context: AccessContext | None = None
    base: str = ""  # absolute base URL, e.g. http://127.0.0.1:8080/fhir
    assigned_id: str | None = None  # a create's id chosen in advance (transaction urn:uuid)
    blob: BlobRef | None = None  # raw Binary content this request uploaded (see binary.py)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def with_(self, **changes: Any) -> Request:
        return replace(self, **changes)

    @property
    def prefer_return(self) -> str | None:
        """The Prefer header's `return`: minimal, representation or OperationOutcome."""
        return _prefer(self.headers.get("prefer"), "return")

    @property
    def prefer_handling(self) -> str | None:
        return _prefer(self.headers.get("prefer"), "handling")


def _prefer(header: str | None, key: str) -> str | None:
    if not header:
        return None
    for part in header.replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == key:
            return value.strip().strip('"')
    return None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes | dict[str, Any] | None = None  # bytes: stored JSON; dict: a resource to render
    headers: dict[str, str] = field(default_factory=dict)
    not_modified: bool = False
    raw: RawContent | None = None  # instead of a body: a Binary's own bytes, streamed as they are
