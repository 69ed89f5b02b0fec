"""The process's one UCUM unit registry (https://ucum.org/ucum), through ucumvert and pint.

Building it takes seconds, so it is built once, by `warm_in_background()` at start (or on
the first use), and shared by every feature that converts units (CDS model inputs, remote
monitoring readings). One registry, built under one lock: two built at once in two threads
race inside pint's registry set-up (KeyError 'bit')."""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_registry: Any = None


def registry() -> Any:
    """The UCUM registry (a ucumvert `PintUcumRegistry`), built on first use."""
    global _registry
    with _lock:
        if _registry is None:
            from ucumvert import PintUcumRegistry  # seconds to build: only when needed

            _registry = PintUcumRegistry()
        return _registry


def warm() -> None:
    """Build the registry now rather than on the first value in another unit."""
    registry()


def warm_in_background() -> None:
    """Build the registry in a daemon thread, so that no request waits for it."""
    if _registry is None:
        threading.Thread(target=warm, name="ucum-registry", daemon=True).start()
