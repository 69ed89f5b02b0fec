"""What the CDS Hooks endpoints remember: registered clients, used JWT `jti`s, feedback.

They live in the auth store's documents (`fhir_server.auth.store.Documents`: one SQLite
table beside the FHIR database, or `auth_<kind>` collections on MongoDB), under three kinds:

    cds_clients    one per CDS client, by its `iss`: its JWK set (inline, or the URLs it
                   is published at, which are also the `jku` values it may name)
    cds_jtis       `"{iss} {jti}"` of every JWT accepted, until its `exp` (replay store)
    cds_feedback   one per card outcome a client reported (service, card, outcome, ...)

The methods are synchronous, like the auth store's; the endpoints call them through
`asyncio.to_thread`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from fhir_server.auth.store import Documents

CLIENTS, JTIS, FEEDBACK = "cds_clients", "cds_jtis", "cds_feedback"
PURGE_EVERY = 60.0  # seconds between two purges of expired jtis
PRIVATE_PARAMS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def public_jwks(jwks: Any) -> dict[str, Any]:
    """`jwks` if it is a JWK set of public EC and RSA keys only (ValueError otherwise)."""
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError("a JWK set needs a non-empty keys array")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("EC", "RSA"):
            raise ValueError("a CDS client's keys are EC or RSA keys")
        if PRIVATE_PARAMS & key.keys():
            raise ValueError("the JWK set holds private key material: register public keys only")
        if not isinstance(key.get("kid"), str):
            raise ValueError("every key needs a kid")
    return {"keys": keys}


@dataclass(frozen=True, slots=True)
class CdsClient:
    """A registered CDS client (an EHR): the `iss` of its JWTs and where its keys are."""

    iss: str
    jwks: dict[str, Any] | None = None  # inline JWK set
    jwks_urls: tuple[str, ...] = ()  # the first is fetched when a JWT names no `jku`
    fhir_servers: tuple[str, ...] = ()  # FHIR servers we may fetch prefetch data from

    def to_doc(self) -> dict[str, Any]:
        return {
            "id": self.iss,
            "jwks": self.jwks,
            "jwks_urls": list(self.jwks_urls),
            "fhir_servers": list(self.fhir_servers),
            "created": time.time(),
            "removed": False,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> CdsClient:
        return cls(
            iss=doc["id"],
            jwks=doc.get("jwks"),
            jwks_urls=tuple(doc.get("jwks_urls") or ()),
            fhir_servers=tuple(doc.get("fhir_servers") or ()),
        )


class CdsStore:
    """CDS clients, their used `jti`s and the feedback they sent."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents
        self._purged = 0.0

    def add_client(self, client: CdsClient) -> None:
        if not (client.jwks or client.jwks_urls):
            raise ValueError("a CDS client needs a JWKS URL or an inline JWKS")
        doc = client.to_doc()
        if self.documents.insert(CLIENTS, doc):
            return
        if not self.documents.update(CLIENTS, client.iss, doc, where={"removed": True}):
            raise ValueError(f"a CDS client with iss {client.iss} already exists")

    def client(self, iss: str) -> CdsClient | None:
        doc = self.documents.get(CLIENTS, iss)
        return None if doc is None or doc.get("removed") else CdsClient.from_doc(doc)

    def clients(self) -> list[CdsClient]:
        docs = self.documents.all(CLIENTS)
        return [CdsClient.from_doc(d) for d in docs if not d.get("removed")]

    def remove_client(self, iss: str) -> bool:
        """Refuse the client's JWTs from now on (the record stays, marked removed)."""
        return self.documents.update(CLIENTS, iss, {"removed": True}, where={"removed": False})

    def use_jti(self, iss: str, jti: str, exp: float) -> bool:
        """Record a JWT's `jti`; False if this client already used it (a replay).

        Expired `jti`s are purged at most once per `PURGE_EVERY` seconds: on SQLite each
        purge is a commit of its own (an fsync), which every call would otherwise pay."""
        now = time.time()
        if now - self._purged >= PURGE_EVERY:
            self._purged = now
            self.documents.purge(JTIS, now)
        return self.documents.insert(JTIS, {"id": f"{iss} {jti}", "expires": exp})

    def add_feedback(self, service: str, client: str | None, items: list[dict[str, Any]]) -> None:
        received = time.time()
        for item in items:
            doc = {"id": uuid.uuid4().hex, "service": service, "client": client, **item}
            self.documents.insert(FEEDBACK, {**doc, "received": received})

    def feedback(
        self, service: str | None = None, outcome: str | None = None
    ) -> list[dict[str, Any]]:
        """Feedback records, oldest first, of one service and/or one outcome."""
        if service is not None:
            docs = self.documents.matching(FEEDBACK, "service", service)
        elif outcome is not None:
            docs = self.documents.matching(FEEDBACK, "outcome", outcome)
        else:
            docs = self.documents.all(FEEDBACK)
        chosen = [d for d in docs if outcome is None or d.get("outcome") == outcome]
        return sorted(chosen, key=lambda d: float(d.get("received", 0)))
