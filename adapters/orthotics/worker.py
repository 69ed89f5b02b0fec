"""Where the CPU-bound design runs: a worker process, never the event loop.

The pool has one process, spawned with the first design (which loads the geometry libraries
there, not in the server); it exits with the server, and on its own when the server is
killed. A dead worker (e.g. out of memory) fails that design and the next one starts a new
worker. The geometry's refusals come back as plain values, since its exceptions do not
pickle with their fields. Tests that stand in for the geometry use a thread instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from adapters.orthotics.model import (
    Design,
    DesignRefused,
    Gate,
    MdrStatement,
    PrescriptionInvalid,
    PrintLimits,
    ScanRejected,
)
from fhir_server.errors import Issue, Unprocessable

if TYPE_CHECKING:
    from adapters.orthotics.inputs import Inputs

T = TypeVar("T")
Kind = Literal["process", "thread"]


class Worker:
    """Runs designs (one at a time) and statement PDFs off the event loop."""

    def __init__(self, kind: Kind = "process") -> None:
        self.kind = kind
        self._slot: asyncio.Semaphore | None = None
        self._pool: ProcessPoolExecutor | None = None

    async def design(self, inputs: Inputs, limits: PrintLimits) -> Design:
        """The design, made in the worker (one at a time), or a 422 naming why not."""
        if self._slot is None:
            self._slot = asyncio.Semaphore(1)
        async with self._slot:
            kind, value = await self.run(_design_outcome, inputs, limits)
        if kind == "rejected":
            raise _scan_refusal(*value)
        if kind == "refused":
            raise _gate_refusal(value)
        if kind == "invalid":
            raise Unprocessable("The prescription cannot be built: " + "; ".join(value))
        return cast(Design, value)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` off the event loop: in the worker process, or a thread."""
        if self.kind == "thread":
            return await asyncio.to_thread(function, *args)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_follow_parent,
                initargs=(os.getpid(),),
            )
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function, *args)
        except BrokenProcessPool:
            self._pool = None  # the worker died (e.g. out of memory): the next run starts one
            raise

    async def statement_pdf(self, statement: MdrStatement) -> bytes:
        return await self.run(_statement_pdf, statement)


def _follow_parent(parent: int) -> None:
    """In the worker: exit when the server process is gone (killed, crashed), which the pool
    itself does not notice, so no orphan keeps designing or holding memory."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _design_outcome(inputs: Inputs, limits: PrintLimits) -> tuple[str, Any]:
    """In the worker: the design, or why not, as values that cross a process boundary (the
    geometry's exceptions do not pickle with their fields)."""
    try:
        return "design", _design(inputs, limits)
    except ScanRejected as rejected:
        return "rejected", (rejected.reason, rejected.details)
    except DesignRefused as refused:
        return "refused", refused.gates
    except PrescriptionInvalid as invalid:
        return "invalid", invalid.problems


def _design(inputs: Inputs, limits: PrintLimits) -> Design:
    """The geometry (trimesh, manifold3d) is imported on first use, in the worker, so a
    server process that designs nothing does not load it."""
    from adapters.orthotics import design

    if inputs.scans:
        return design.design_from_scan(inputs.scans, inputs.content_type, inputs.rx, limits)
    assert inputs.measurements is not None
    return design.design_from_measurements(inputs.measurements, inputs.rx, limits)


def _statement_pdf(statement: MdrStatement) -> bytes:
    from adapters.orthotics import design

    return design.statement_pdf(statement)


def _scan_refusal(reason: str, details: dict[str, Any]) -> Unprocessable:
    shown = "; ".join(f"{k}: {v}" for k, v in details.items())
    message = f"The scan cannot be used: {reason}" + (f" ({shown})" if shown else "")
    return Unprocessable(message, issues=[Issue(message, "processing")])


def _gate_refusal(gates: tuple[Gate, ...]) -> Unprocessable:
    issues = [
        Issue(
            f"Printability gate '{g.name}' failed: measured {g.measured} {g.unit}, "
            f"limit {g.limit} {g.unit}",
            "processing",
        )
        for g in gates
    ]
    return Unprocessable("The design failed printability gates; nothing was issued", issues=issues)
