from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.auth_ui_stack import AuthUiStack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthUiStack]:
    """The sign-in pages with the fake authorize step; 3 failed sign-ins lock a name."""
    running = AuthUiStack(tmp_path_factory.mktemp("auth-ui"), auth_login_attempts=3,
                          auth_login_lockout=120.0).start()
    yield running
    running.stop()
