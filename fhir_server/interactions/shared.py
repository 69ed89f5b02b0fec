"""State every server process keeps in memory, kept in step across processes.

Custom SearchParameters and terminology (CodeSystem, ValueSet, ConceptMap) live in each
process's memory (`FhirService.watch`). A process that commits a version of a watched
type applies it at once and bumps the storage's generation counter `shared-state`. Every
process reads that counter at most every `CHECK_EVERY` seconds, before a request; when it
moved, the process reads the history of the watched types since its last catch-up (less
`MARGIN`, for clocks and commits that lag their timestamps) and applies the newest
version of each resource it has not applied yet. So a change made through one process is
in effect in every process within `CHECK_EVERY` seconds plus one request, on every engine.

A version is applied once per process, in version order per resource (`_applied`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from fhir_server.storage.base import HistoryQuery, Storage, StoredResource

log = logging.getLogger("fhir_server")

Apply = Callable[[StoredResource], None]
"""Told of one version of a watched type (a deletion has `deleted` set)."""

GENERATION = "shared-state"
CHECK_EVERY = 0.25  # seconds between two reads of the counter in one process
MARGIN = 120.0  # seconds of history re-read before the last catch-up
PAGE = 500


class SharedState:
    """The watched types of one process, their appliers, and the versions applied."""

    def __init__(self, storage: Storage, check_every: float = CHECK_EVERY) -> None:
        self.storage = storage
        self.check_every = check_every
        self._watches: list[tuple[frozenset[str], Apply]] = []
        self._applied: dict[tuple[str, str], int] = {}
        self._generation: int | None = None
        self._checked = 0.0  # monotonic time of the last read of the counter
        self._since = time.time()  # wall time of the last catch-up

    @property
    def types(self) -> frozenset[str]:
        return frozenset(t for types, _ in self._watches for t in types)

    def loaded(self, rec: StoredResource) -> None:
        """`rec` was applied at start-up (the current version)."""
        key = (rec.type, rec.id)
        self._applied[key] = max(self._applied.get(key, 0), rec.version)

    def watch(self, types: Sequence[str], apply: Apply) -> None:
        self._watches.append((frozenset(types), apply))

    def on_write(self, written: Sequence[StoredResource]) -> None:
        """Versions this process committed: apply them now."""
        for rec in written:
            self._apply(rec)

    async def changed(self, written: Sequence[StoredResource]) -> None:
        """After a commit: tell the other processes if it wrote a watched type."""
        watched = self.types
        if any(rec.type in watched for rec in written):
            try:
                await self.storage.bump_generation(GENERATION)
            except Exception:  # the write stands; others see it at their next bump
                log.exception("could not announce a change of shared state")

    async def check(self) -> None:
        """Catch up with other processes' changes, if the counter moved (cheap otherwise)."""
        now = time.monotonic()
        if not self._watches or now - self._checked < self.check_every:
            return
        self._checked = now
        generation = await self.storage.generation(GENERATION)
        if generation == self._generation:
            return
        self._generation = generation  # (the first check catches up since start-up too)
        await self.catch_up()

    async def catch_up(self) -> None:
        """Apply every version of the watched types committed since the last catch-up."""
        started = time.time()
        since = _instant(self._since - MARGIN)
        newest: dict[tuple[str, str], StoredResource] = {}
        for type in sorted(self.types):
            offset = 0
            while True:
                page = await self.storage.history(
                    HistoryQuery(type=type, since=since, count=PAGE, offset=offset)
                )
                for rec in page.resources:  # newest first
                    newest.setdefault((rec.type, rec.id), rec)
                if len(page.resources) < PAGE:
                    break
                offset += PAGE
        for rec in sorted(newest.values(), key=lambda r: r.last_updated):
            self._apply(rec)
        self._since = started

    def _apply(self, rec: StoredResource) -> None:
        key = (rec.type, rec.id)
        applied = self._applied.get(key)
        if applied is not None and rec.version <= applied:
            return
        self._applied[key] = rec.version
        if applied is None and rec.deleted:  # never seen alive here: nothing to undo
            return
        for types, apply in self._watches:
            if rec.type in types:
                apply(rec)


def _instant(seconds: float) -> str:
    """A FHIR instant in UTC with microseconds, as `StoredResource.last_updated`."""
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
