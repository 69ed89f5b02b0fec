"""A running server with CDS services and a registered CDS client (tests.support.cds_client)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

import pytest

from cds_hooks.service import CdsService
from fhir_server.storage.mongodb import MongoStorage
from fhir_server.storage.sqlite import SQLiteStorage
from tests.support.cds_client import CdsStack, start_stack
from tests.support.mongomock_async import mock_database

StackFactory = Callable[..., CdsStack]


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def cds_stack_factory(
    tmp_path_factory: pytest.TempPathFactory, engine: str
) -> Iterator[StackFactory]:
    """`factory(services, resources=(), **settings)`: a started `CdsStack` (stopped at the
    end of the module), its FHIR data on the `engine` under test. Starting one takes
    seconds: a module's tests share theirs (a module-scoped fixture)."""
    stacks: list[CdsStack] = []

    def factory(
        services: Iterable[CdsService] | None,
        resources: Iterable[dict[str, Any]] = (),
        **settings: str,
    ) -> CdsStack:
        tmp_path = tmp_path_factory.mktemp("cds")
        storage = (
            SQLiteStorage(tmp_path / "fhir.db")
            if engine == "sqlite"
            else MongoStorage(cast(Any, mock_database()))
        )
        stack = start_stack(tmp_path, services, storage, resources, **settings)
        stacks.append(stack)
        return stack

    yield factory
    for stack in stacks:
        stack.stop()
