"""`fhir-server auth user add/list/remove` as an operator runs them: the password comes
from standard input, never from an argument, and is stored only as a hash."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from fhir_server.auth.users import verify_password
from fhir_server.auth.users_sqlite import SQLiteUserStore


def auth(*args: str, database: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "fhir-server"), "auth", *args]
    env = {**os.environ, "FHIR_DATABASE": str(database)}
    return subprocess.run(
        command, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


async def _stored(path: Path, name: str, password: str) -> tuple[str, bool]:
    store = SQLiteUserStore(path)
    await store.open()
    try:
        user = await store.user_by_name(name)
        assert user is not None
        return user.password_hash, await verify_password(user, password)
    finally:
        await store.close()


def test_add_list_remove_users(tmp_path: Path) -> None:
    database = tmp_path / "fhir.db"
    added = auth(
        "user",
        "add",
        "doc",
        "--role",
        "clinician",
        "--fhir-user",
        "Practitioner/123",
        "--password-stdin",
        database=database,
        stdin="correct horse battery\n",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("added user doc (clinician), id ")
    hash_, ok = asyncio.run(_stored(tmp_path / "fhir.db.auth.db", "doc", "correct horse battery"))
    assert ok and hash_.startswith("$argon2id$")
    listed = auth("user", "list", database=database)
    assert listed.stdout.split("\t")[:3] == ["doc", "clinician", "Practitioner/123"]
    assert "correct horse" not in listed.stdout and "argon2" not in listed.stdout
    again = auth(
        "user",
        "add",
        "doc",
        "--role",
        "nurse",
        "--password-stdin",
        database=database,
        stdin="another password\n",
    )
    assert again.returncode == 2 and "exists already" in again.stderr
    assert auth("user", "remove", "doc", database=database).returncode == 0
    assert auth("user", "list", database=database).stdout.strip() == "no users"
    missing = auth("user", "remove", "doc", database=database)
    assert missing.returncode == 2 and "no user named 'doc'" in missing.stderr


def test_bad_role_or_fhir_user_is_refused(tmp_path: Path) -> None:
    bad_role = auth(
        "user",
        "add",
        "x",
        "--role",
        "surgeon",
        "--password-stdin",
        database=tmp_path / "fhir.db",
        stdin="long enough pw\n",
    )
    assert bad_role.returncode == 2 and "unknown role 'surgeon'" in bad_role.stderr
    bad_ref = auth(
        "user",
        "add",
        "x",
        "--role",
        "clinician",
        "--fhir-user",
        "Device/1",
        "--password-stdin",
        database=tmp_path / "fhir.db",
        stdin="long enough pw\n",
    )
    assert bad_ref.returncode == 2 and "--fhir-user must be" in bad_ref.stderr


def test_there_is_no_password_argument(tmp_path: Path) -> None:
    result = auth(
        "user",
        "add",
        "x",
        "--role",
        "admin",
        "--password",
        "secret-secret",
        database=tmp_path / "fhir.db",
    )
    assert result.returncode == 2
    assert "No such option" in result.stderr
