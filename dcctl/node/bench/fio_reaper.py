"""A cleanup guard that outlives the fio task: no job files are left when the task is killed.

The node's stdin watchdog and the local transport end a task with SIGKILL to its process group,
which no handler sees. So before fio writes anything the task starts this guard in a session of
its own, holding the read end of a pipe. The task tells it fio's process group and, once it has
cleaned up, "done". If the pipe closes without "done" (the task died), the guard kills fio and
its job processes (fio_kill) and removes the job directory.

Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from dcctl.node.bench.fio_kill import kill_run, wait_gone
from dcctl.node.bench.fio_scratch import remove_job_dir

# How long the guard waits for a killed fio to be gone before it removes the files anyway.
_GONE_WAIT_S = 10.0
_EXIT_WAIT_S = 5.0
# The directory that holds the `dcctl` package: the node runtime's root, or a source checkout.
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from dcctl.node.bench.fio_reaper import main; sys.exit(main(sys.argv[2:]))"
)


class Guard:
    """The task's end of the pipe to a running guard."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: int) -> None:
        self._process = process
        self._pipe: int | None = pipe

    def _say(self, line: str) -> None:
        if self._pipe is None:
            return
        try:
            os.write(self._pipe, (line + "\n").encode("ascii"))
        except OSError:
            self._close()  # the guard is gone (killed by hand): the task cleans up alone

    def watch(self, pgid: int) -> None:
        """fio runs as process group `pgid`: kill it if the task dies."""
        self._say(f"pgid {pgid}")

    def release(self) -> None:
        """fio has exited and been reaped: its group id means nothing any more."""
        self._say("released")

    def done(self) -> None:
        """The task cleaned up itself: the guard exits without touching anything."""
        self._say("done")
        self._close()
        # It exits on its own once it reads "done"; waiting only keeps it from lingering as a
        # zombie of a long-lived caller.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=_EXIT_WAIT_S)

    def _close(self) -> None:
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None


def start_guard(job_dir: str, created: list[str]) -> Guard | None:
    """Start a guard for `job_dir`; None where no interpreter could be started for it."""
    read_end, write_end = os.pipe()
    try:
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _BOOT, _ROOT, str(read_end), job_dir, *created],
            pass_fds=(read_end,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    except OSError:
        os.close(write_end)
        return None
    finally:
        os.close(read_end)
    return Guard(process, write_end)


def _listen(pipe: int) -> tuple[int | None, bool]:
    """Read the task's messages until it closes the pipe: (fio's live group, whether done)."""
    pgid: int | None = None
    done = False
    with os.fdopen(pipe, "rb") as messages:
        for raw in messages:
            word, _, value = raw.decode("ascii", "replace").strip().partition(" ")
            if word == "pgid":
                pgid = int(value)
            elif word == "released":
                pgid = None
            elif word == "done":
                done = True
    return pgid, done


def main(argv: list[str]) -> int:
    """`<pipe fd> <job dir> [<created scratch dir> ...]`, as start_guard passes them."""
    # A stop signal sent to the whole session or cgroup must not end the guard before the
    # task it watches: it leaves when the pipe closes.
    for stop in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, signal.SIG_IGN)
    pgid, done = _listen(int(argv[0]))
    if done:
        return 0
    kill_run(pgid, argv[1])
    wait_gone(argv[1], _GONE_WAIT_S)
    remove_job_dir(argv[1], argv[2:])
    return 0
