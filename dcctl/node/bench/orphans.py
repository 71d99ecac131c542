"""A benchmark worker must not outlive the process that started it.

torchrun starts each rank in a session of its own, so a SIGKILL to the task's process group
(the node's `timeout -k`, the stdin watchdog) kills torchrun but not the ranks, which would
keep a GPU busy for ever. Each worker asks the kernel to kill it when its parent dies.

The request only covers a parent that dies after it is made. A stop that lands while torchrun
is still starting its ranks can kill torchrun between a rank's fork and its request; the rank
then already belongs to init (or a subreaper), and nothing would ever stop it. So the launcher
names itself in the workers' environment, and a rank whose parent is neither the launcher nor
a child of it leaves at once.
"""

from __future__ import annotations

import contextlib
import os
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
# The pid of the task that started the workers (dcctl.node.bench.launch sets it).
LAUNCHER_ENV = "DCCTL_LAUNCHER_PID"


def _parent_of(pid: int) -> int | None:
    """`pid`'s parent from /proc, or None when it cannot be read (it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _orphaned(parent: int) -> bool:
    """Whether this process's parent is no longer the launcher or a child of it."""
    launcher = os.environ.get(LAUNCHER_ENV, "")
    if not launcher.isdigit():
        return False  # started by hand: nothing to compare with
    expected = int(launcher)
    return parent != expected and _parent_of(parent) != expected


def die_with_parent() -> None:
    """Linux only; elsewhere, or without ctypes, nothing happens."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    # Read after the request: a parent that dies from here on sends the signal.
    if _orphaned(os.getppid()):
        os._exit(1)
