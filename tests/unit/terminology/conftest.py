"""Terminology fixtures: the core R4 content, and a registry of the small samples."""

from __future__ import annotations

import pytest

from terminology import Terminology
from tests.unit.terminology.samples import COLORS, COLORS_VS, colors, dag, value_set


@pytest.fixture(scope="session")
def core() -> Terminology:
    """Core content only; tests must not put into it."""
    return Terminology()


@pytest.fixture
def local() -> Terminology:
    """No core content; the colors and DAG code systems and an all-colors value set."""
    terminology = Terminology(include_core=False)
    terminology.put(colors())
    terminology.put(dag())
    terminology.put(value_set(COLORS_VS, {"include": [{"system": COLORS}]}, "colors"))
    return terminology
