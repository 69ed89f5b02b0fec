"""Read by id with a bearer token, against a server with authorization on.

The token comes from the authorization server's own command line, as an operator gets
one for curl: a backend client registered with `fhir-server auth client add --jwks FILE`
(a backend system's public keys; the benchmark generates an RSA key for it), then
`fhir-server auth token --client ID --scope system/Patient.rs`. Where those commands are
not there (or fail), the row says why instead of a figure.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from joserfc.jwk import RSAKey

from bench.server import BIN_DIR

SCOPE = "system/Patient.rs"
CLIENT_NAME = "bench-reader"


class TokenUnavailable(RuntimeError):
    """`fhir-server auth` could not give the benchmark a token; the message says why."""


def bearer_token(env: dict[str, str], folder: Path) -> str:
    """A fresh access token for SCOPE, minted by the CLI under `env` (the server's); the
    client's JWKS file is written in `folder`."""
    jwks = folder / f"{CLIENT_NAME}.jwks.json"
    key = RSAKey.generate_key(2048, parameters={"kid": CLIENT_NAME})
    jwks.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client = _cli(
        env, "auth", "client", "add", "--name", CLIENT_NAME, "--jwks", str(jwks), "--scopes", SCOPE
    )
    client_id = client.split("client_id:", 1)[-1].split()[0] if "client_id:" in client else ""
    if not client_id:
        raise TokenUnavailable("`fhir-server auth client add` printed no client id")
    token = _cli(env, "auth", "token", "--client", client_id, "--scope", SCOPE).strip()
    if token.count(".") != 2:
        raise TokenUnavailable("`fhir-server auth token` printed no JWT")
    return token


def _cli(env: dict[str, str], *args: str) -> str:
    command = [str(BIN_DIR / "fhir-server"), *args]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise TokenUnavailable(f"`fhir-server {' '.join(args[:2])}`: {error}") from None
    if done.returncode != 0:
        lines = [line.strip("│╭╮╰╯─ \t") for line in done.stderr.splitlines()]
        why = ([line for line in lines if line] or ["failed"])[-1]  # typer draws boxes
        raise TokenUnavailable(f"`fhir-server {' '.join(args[:2])}`: {why}")
    return done.stdout


def write_token(data_dir: Path, token: str) -> Path:
    """A copy of the workload data whose requests carry `token` (common.lua reads it)."""
    bearer_dir = data_dir.parent / "data-bearer"
    bearer_dir.mkdir(parents=True, exist_ok=True)
    for name in ("ids.txt", "identifiers.txt", "patient.json"):
        (bearer_dir / name).write_bytes((data_dir / name).read_bytes())
    (bearer_dir / "token.txt").write_text(token + "\n")
    return bearer_dir
