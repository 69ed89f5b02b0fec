"""`fhir-server bulk export`: a Bulk Data Access 2.0 client for this or any FHIR server.

Kick-off (`Prefer: respond-async`), polling with back-off that honours `Retry-After`, and
download of every file of the manifest into a folder, each to `<name>.part` then renamed,
so a second run skips the files already complete and re-fetches the rest. The status URL
is kept in the folder (`.bulk-state`), so a run that stops (Ctrl-C, a lost connection)
continues the same export instead of starting another. With `--client-id` and `--key` it
authenticates as a SMART Backend Services client (a signed JWT client assertion, RS384 or
ES384; the token URL from `--token-url` or the server's `.well-known/smart-configuration`)
and fetches a new token whenever the server answers 401 (backend tokens live minutes).

Output files are `<Type>.<n>.ndjson`, which `fhir-server load <folder>` takes as they are;
deletions (`_since` exports) are `<Type>.<n>.deleted-ndjson` and errors
`OperationOutcome.<n>.error-ndjson`, which `load` leaves alone.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

app = typer.Typer(help="Bulk Data Access (FHIR $export) client", no_args_is_help=True)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
STATE = ".bulk-state"
SUFFIX = {"output": "ndjson", "deleted": "deleted-ndjson", "error": "error-ndjson"}
MAX_WAIT = 60.0


class ExportFailed(Exception):
    """The server refused or failed the export (the message says why)."""


class JobGone(ExportFailed):
    """The status URL names no job (any more): expired, cancelled or never known."""


class Credentials:
    """Backend Services: a client assertion signed with `key`, exchanged for a token."""

    def __init__(self, client_id: str, key_file: Path, token_url: str | None, scope: str) -> None:
        self.client_id, self.token_url, self.scope = client_id, token_url, scope
        self.key = _load_key(key_file)
        self.token: str | None = None

    def authorization(self, http: httpx.Client, base: str, renew: bool = False) -> str:
        if self.token is None or renew:
            self.token = self._fetch(http, base)
        return f"Bearer {self.token}"

    def _fetch(self, http: httpx.Client, base: str) -> str:
        from joserfc import jwt

        url = self.token_url or _discover(http, base)
        alg = "RS384" if self.key.key_type == "RSA" else "ES384"
        now = int(time.time())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": url,
            "iat": now,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
        }
        header = {"alg": alg, "typ": "JWT", **({"kid": self.key.kid} if self.key.kid else {})}
        assertion = jwt.encode(header, claims, self.key, algorithms=[alg])
        reply = http.post(
            url,
            data={
                "grant_type": "client_credentials",
                "scope": self.scope,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )
        if reply.status_code != 200:
            raise ExportFailed(
                f"the token endpoint refused: {reply.status_code} {reply.text[:300]}"
            )
        return str(reply.json()["access_token"])


def _load_key(path: Path) -> Any:
    """A private key from a JWK (JSON) or PEM file."""
    from joserfc.jwk import ECKey, JWKRegistry, RSAKey

    raw = path.read_bytes()
    if raw.lstrip().startswith(b"{"):
        return JWKRegistry.import_key(json.loads(raw))
    try:
        return RSAKey.import_key(raw)
    except Exception:
        return ECKey.import_key(raw)


def _discover(http: httpx.Client, base: str) -> str:
    reply = http.get(f"{base}/.well-known/smart-configuration")
    if reply.status_code != 200 or "token_endpoint" not in reply.json():
        raise ExportFailed(f"{base} publishes no SMART configuration with a token_endpoint")
    return str(reply.json()["token_endpoint"])


class BulkClient:
    """One export from `base` into `folder` (see the module docstring)."""

    def __init__(
        self,
        base: str,
        folder: Path,
        credentials: Credentials | None = None,
        http: httpx.Client | None = None,
        say: Any = print,
    ) -> None:
        self.base = base.rstrip("/")
        self.folder = folder
        self.credentials = credentials
        self.http = http or httpx.Client(timeout=120, follow_redirects=False)
        self.say = say

    def __enter__(self) -> BulkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with the bearer token (a fresh one after a 401)."""
        for renew in (False, True):
            headers = dict(kwargs.pop("headers", {}))
            if self.credentials is not None:
                headers["Authorization"] = self.credentials.authorization(
                    self.http, self.base, renew
                )
            reply = self.http.request(method, url, headers=headers, **kwargs)
            kwargs["headers"] = {k: v for k, v in headers.items() if k != "Authorization"}
            if reply.status_code != 401 or self.credentials is None:
                return reply
        return reply

    def run(
        self, path: str = "$export", params: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        """Kick off (or continue the export of an earlier run), wait, download; the manifest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        saved = self._saved_status()
        try:
            manifest = self.wait(saved) if saved else None
        except JobGone:  # an earlier run's export expired: start a new one
            manifest = None
        if manifest is None:
            manifest = self.wait(self.kickoff(path, params or []))
        self.download(manifest)
        return manifest

    def _saved_status(self) -> str | None:
        state = self.folder / STATE
        if not state.exists():
            return None
        saved = json.loads(state.read_text())
        return str(saved["status"]) if saved.get("base") == self.base else None

    def kickoff(self, path: str, params: list[tuple[str, str]]) -> str:
        reply = self.request(
            "GET",
            f"{self.base}/{path}",
            params=params,
            headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        )
        if reply.status_code != 202 or "content-location" not in reply.headers:
            raise ExportFailed(f"kick-off refused: {reply.status_code} {_reason(reply)}")
        status = reply.headers["content-location"]
        (self.folder / STATE).write_text(json.dumps({"base": self.base, "status": status}))
        self.say(f"export started: {status}")
        return status

    def wait(self, status: str) -> dict[str, Any]:
        """Poll `status` until the manifest, waiting as `Retry-After` asks (else 1, 2, 4...)."""
        delay = 1.0
        while True:
            reply = self.request("GET", status, headers={"Accept": "application/json"})
            if reply.status_code == 200:
                manifest: dict[str, Any] = reply.json()
                return manifest
            if reply.status_code == 404:
                raise JobGone(f"no export at {status}: {_reason(reply)}")
            if reply.status_code not in (202, 429, 503):
                raise ExportFailed(f"the export failed: {reply.status_code} {_reason(reply)}")
            asked = _retry_after(reply.headers.get("retry-after"))
            self.say(f"waiting: {reply.headers.get('x-progress') or reply.status_code}")
            time.sleep(asked if asked is not None else delay)
            delay = min(delay * 2, MAX_WAIT)

    def download(self, manifest: dict[str, Any]) -> None:
        auth = bool(manifest.get("requiresAccessToken"))
        for kind in ("output", "deleted", "error"):
            numbers: dict[str, int] = {}
            for entry in manifest.get(kind) or []:
                type = entry.get("type") or "OperationOutcome"
                numbers[type] = numbers.get(type, 0) + 1
                name = f"{type}.{numbers[type]}.{SUFFIX[kind]}"
                self._fetch(entry["url"], self.folder / name, entry.get("count"), auth)

    def _fetch(self, url: str, target: Path, count: int | None, auth: bool) -> None:
        if target.exists() and (count is None or _lines(target) == count):
            self.say(f"{target.name}: complete, skipped")
            return
        part = target.with_name(target.name + ".part")
        for renew in (False, True):
            headers = {"Accept": "application/fhir+ndjson"}
            if auth and self.credentials is not None:
                headers["Authorization"] = self.credentials.authorization(
                    self.http, self.base, renew
                )
            with self.http.stream("GET", url, headers=headers) as reply:
                if reply.status_code == 401 and not renew and self.credentials is not None:
                    continue
                if reply.status_code != 200:
                    reply.read()
                    raise ExportFailed(f"{url}: {reply.status_code} {_reason(reply)}")
                with part.open("wb") as out:  # streamed: constant memory whatever the size
                    for chunk in reply.iter_bytes():
                        out.write(chunk)
            break
        part.replace(target)
        self.say(f"{target.name}: {count if count is not None else '?'} resources")


def _lines(path: Path) -> int:
    with path.open("rb") as file:
        return sum(1 for line in file if line.strip())


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), MAX_WAIT)
    except ValueError:
        return None


def _reason(reply: httpx.Response) -> str:
    try:
        issues = reply.json().get("issue") or []
        return "; ".join(str(i.get("diagnostics", "")) for i in issues) or reply.text[:300]
    except ValueError:
        return reply.text[:300]


@app.command("export")
def export(
    source: Annotated[str, typer.Option("--from", help="The FHIR base URL to export from")],
    to: Annotated[Path, typer.Option("--to", help="Folder for the NDJSON files")],
    type: Annotated[
        str | None, typer.Option("--type", help="_type, e.g. Patient,Observation")
    ] = None,
    since: Annotated[str | None, typer.Option(help="_since, a FHIR instant")] = None,
    type_filter: Annotated[
        list[str] | None, typer.Option("--type-filter", help="_typeFilter (repeatable)")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Export the Group with this id")] = None,
    patients: Annotated[bool, typer.Option("--patients", help="Patient-level export")] = False,
    client_id: Annotated[str | None, typer.Option(help="Backend Services client_id")] = None,
    key: Annotated[Path | None, typer.Option(help="Its private key (JWK or PEM)")] = None,
    token_url: Annotated[str | None, typer.Option(help="Default: from SMART discovery")] = None,
    scope: Annotated[str, typer.Option(help="Scopes to ask for")] = "system/*.rs",
) -> None:
    """Export from a FHIR server into a folder that `fhir-server load` takes."""
    if (client_id is None) != (key is None):
        raise typer.BadParameter("--client-id and --key go together")
    credentials = Credentials(client_id, key, token_url, scope) if client_id and key else None
    params = [("_type", type)] if type else []
    params += [("_since", since)] if since else []
    params += [("_typeFilter", f) for f in type_filter or []]
    path = f"Group/{group}/$export" if group else "Patient/$export" if patients else "$export"
    try:
        with BulkClient(
            source, to, credentials, say=lambda text: typer.echo(text, err=True)
        ) as client:
            manifest = client.run(path, params)
    except (ExportFailed, httpx.HTTPError) as error:
        typer.echo(f"bulk export: {error}", err=True)
        raise typer.Exit(1) from None
    total = sum(int(e.get("count") or 0) for e in manifest.get("output") or [])
    typer.echo(f"{total} resources in {len(manifest.get('output') or [])} files in {to}")
