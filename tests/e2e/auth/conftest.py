from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.auth_ui_stack import AuthUiStack

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthUiStack]:
    """The sign-in pages with the fake authorize step; 3 failed sign-ins lock a name."""
    running = AuthUiStack(
        tmp_path_factory.mktemp("auth-ui"), auth_login_attempts=3, auth_login_lockout=120.0
    ).start()
    yield running
    running.stop()


CHROMIUM = Path("/usr/bin/chromium")
INSTALL = Path(__file__).resolve().parents[3] / "scripts" / "install_browser.sh"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed by the project's script when missing and we are root."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.skip(f"browser tests need {CHROMIUM}; run scripts/install_browser.sh as root")
        subprocess.run(["sh", str(INSTALL)], check=True, capture_output=True, timeout=900)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser_context(chromium: str) -> Iterator[BrowserContext]:
    """A headless Chromium driven by Playwright (no browser download: Debian's build)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 900, "height": 900})
        yield context
        context.close()
        browser.close()
