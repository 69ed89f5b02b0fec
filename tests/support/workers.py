"""Looking at a multi-process server from outside (Linux /proc): its workers, their CPU
time, and which of them listens on a port (the leader, for MLLP)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

PROC = Path("/proc")


def require_proc() -> None:
    if not (PROC / "self" / "stat").exists():
        pytest.skip("needs Linux /proc to see the worker processes")


def workers(pid: int) -> list[int]:
    """The live worker processes of server `pid` (not multiprocessing's resource tracker)."""
    found = []
    for child in children(pid):
        try:
            cmdline = (PROC / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    """User + system CPU time of `pid`, in clock ticks."""
    fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        path = PROC / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(parts[9])
    return inodes


def listeners(pids: list[int], port: int) -> list[int]:
    """Which of `pids` hold a listening socket on `port`."""
    inodes = _listening_inodes(port)
    holding = []
    for pid in pids:
        try:
            fds = os.listdir(PROC / str(pid) / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(PROC / str(pid) / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                holding.append(pid)
                break
    return holding


def wait_for_workers(pid: int, count: int, timeout: float = 120.0) -> list[int]:
    """The `count` worker processes of server `pid`, once they are all there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = workers(pid)
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"server {pid} did not start {count} workers")


def wait_for_listener(pids: list[int], port: int, timeout: float) -> int:
    """The one of `pids` that listens on `port`, once one does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holding = listeners(pids, port)
        if holding:
            assert len(holding) == 1, f"several processes listen on {port}: {holding}"
            return holding[0]
        time.sleep(0.05)
    raise AssertionError(f"nobody listens on {port} within {timeout} s")
