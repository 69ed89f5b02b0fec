"""The `UserStore` contract, on SQLite and on MongoDB (mongomock): users, failed-login
counters, and the short-lived records behind sessions and launches."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from fhir_server.auth.users import Throttle, UserError, UserStore, new_user, verify_password
from fhir_server.auth.users_mongodb import MongoUserStore
from fhir_server.auth.users_sqlite import SQLiteUserStore
from tests.support.mongomock_async import mock_database


@pytest.fixture(params=["sqlite", "mongomock"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UserStore]:
    opened: UserStore
    if request.param == "sqlite":
        opened = SQLiteUserStore(tmp_path / "fhir.db.auth.db")
    else:
        opened = MongoUserStore(cast(Any, mock_database()))
    await opened.open()
    yield opened
    await opened.close()


async def test_users_are_added_found_listed_and_removed(store: UserStore) -> None:
    doc = new_user("doc", "a-long-password", "clinician", "Practitioner/1")
    await store.add_user(doc)
    await store.add_user(new_user("amy", "a-long-password", "nurse", None))
    assert await store.user_by_name("doc") == doc
    assert await store.user_by_name("DOC") == doc  # names are case-insensitive
    assert await store.user_by_id(doc.id) == doc
    assert [u.name for u in await store.list_users()] == ["amy", "doc"]
    with pytest.raises(UserError, match="exists already"):
        await store.add_user(new_user("Doc", "another-password", "admin", None))
    assert await store.remove_user("doc") is True
    assert await store.remove_user("doc") is False
    assert await store.user_by_id(doc.id) is None


async def test_the_password_is_stored_as_an_argon2id_hash(store: UserStore) -> None:
    await store.add_user(new_user("doc", "a-long-password", "clinician", None))
    user = await store.user_by_name("doc")
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")
    assert "a-long-password" not in user.password_hash
    assert await verify_password(user, "a-long-password")
    assert not await verify_password(user, "a-long-passwore")
    assert not await verify_password(None, "a-long-password")


async def test_failures_count_within_the_window_and_restart_after_it(store: UserStore) -> None:
    assert await store.count_failure("user:doc", 1000.0, 60.0) == 1
    assert await store.count_failure("user:doc", 1010.0, 60.0) == 2
    assert await store.failures("user:doc", 1020.0, 60.0) == 2
    assert await store.failures("user:doc", 1071.0, 60.0) == 0  # 61 s after the last
    assert await store.count_failure("user:doc", 1100.0, 60.0) == 1  # a new window
    await store.clear_failures("user:doc")
    assert await store.failures("user:doc", 1100.0, 60.0) == 0


async def test_throttle_locks_a_name_after_the_allowed_failures(store: UserStore) -> None:
    throttle = Throttle(store, attempts=2, lockout=60.0)
    await throttle.failed("Doc", "10.0.0.1")
    assert not await throttle.locked("doc", "10.0.0.2")
    await throttle.failed("doc", "10.0.0.1")
    assert await throttle.locked("DOC", "10.0.0.2")  # the name, from any address
    assert not await throttle.locked("amy", "10.0.0.2")
    await throttle.succeeded("doc")
    assert not await throttle.locked("doc", "10.0.0.2")


async def test_throttle_locks_an_address_that_tries_many_names(store: UserStore) -> None:
    throttle = Throttle(store, attempts=2, lockout=60.0)
    for name in ("a", "b", "c", "d", "e", "f", "g", "h"):
        await throttle.failed(name, "10.0.0.9")
    assert await throttle.locked("someone-else", "10.0.0.9")
    assert not await throttle.locked("someone-else", "10.0.0.8")


async def test_records_expire(store: UserStore) -> None:
    now = time.time()  # real times: MongoDB's TTL index also removes expired records
    await store.put_record("session", "k1", {"user_id": "u1"}, expires=now + 100)
    assert await store.get_record("session", "k1", now + 99) == {"user_id": "u1"}
    assert await store.get_record("launch", "k1", now) is None  # kinds are apart
    assert await store.get_record("session", "k1", now + 101) is None
    await store.put_record("session", "k2", {"a": 1}, expires=now + 500)
    await store.delete_record("session", "k2")
    assert await store.get_record("session", "k2", now) is None


@pytest.mark.parametrize(
    ("name", "role", "fhir_user", "message"),
    [
        ("", "clinician", None, "1 to 100 characters"),
        ("a b", "clinician", None, "without spaces"),
        ("doc", "surgeon", None, "unknown role"),
        ("doc", "clinician", "Observation/1", "--fhir-user must be"),
        ("doc", "clinician", "Practitioner/", "--fhir-user must be"),
        ("pat", "patient", "Practitioner/1", "a patient user needs"),
        ("pat", "patient", None, "a patient user needs"),
    ],
)
def test_new_user_checks_its_fields(
    name: str, role: str, fhir_user: str | None, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        new_user(name, "a-long-password", role, fhir_user)


def test_new_user_needs_a_password_of_eight_characters() -> None:
    with pytest.raises(UserError, match="at least 8"):
        new_user("doc", "short", "clinician", None)
