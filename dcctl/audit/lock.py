"""One audit at a time per state dir: cron starting the next audit while the last one still
runs (a slow node, a hung mount) must not pile up runs on the nodes.

The lock is a POSIX record lock (`lockf`) on `<state>/audit.lock`, which the kernel drops when
the holder exits however it exits (SIGKILL included), so a stale lock never blocks the next
audit; unlike `flock`, a process forked from the holder (a fleet worker) does not hold it too.
The file holds the holder's pid and start time, for the message the second audit prints.
"""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

LOCK_NAME = "audit.lock"


@dataclass(frozen=True)
class Busy:
    """Another audit holds the lock: what its lock file says about it."""

    path: Path
    holder: str

    def __str__(self) -> str:
        held_by = f" ({self.holder})" if self.holder else ""
        return f"another audit is running{held_by}; this one exits (lock {self.path})"


class AuditLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> Busy | None:
        """Take the lock, or say who holds it; OSError when the lock file cannot be made."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(descriptor, "r+")
        try:
            fcntl.lockf(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                handle.close()
                raise
            holder = handle.read(200).strip()
            handle.close()
            return Busy(self.path, holder)
        except BaseException:
            handle.close()
            raise
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}, started {started}\n")
        handle.flush()
        self._file = handle
        return None

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None
