"""Looking at processes from tests: waiting on a condition, and finding a run's processes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def wait_for(predicate: Callable[[], object], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def process_state(pid: int) -> str | None:
    """The state letter of `pid` in /proc (R, S, T for stopped, Z, ...); None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.split(")")[-1].split()[0]


def process_alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")


def pids_with_env(marker: str) -> list[int]:
    """Processes whose environment holds `marker` (how a test finds its own node tasks)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if process_alive(pid)]


def children_running(parent: int, command_part: str) -> list[int]:
    """Live children of `parent` whose command line contains `command_part`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split(")")[-1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z" and command_part in cmdline:
            found.append(int(stat.parent.name))
    return found


def blocked_writing_to_a_pipe(pid: int) -> bool:
    """`pid` (its main thread) waits for room in a pipe: its reader is not reading."""
    try:
        return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False
