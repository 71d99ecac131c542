"""SSH worker processes, each holding the connections of its share of the hosts for the whole run.

paramiko's key exchange and ciphers run in Python under one GIL, so one controller process
tops out at a few dozen handshakes a second however many cores it has, where an `xargs -P` loop
of `ssh` clients uses them all. Past a few hundred hosts the SSH hosts are dealt out to worker
processes, up to one per core, each with its own thread pool, handshake bound and connections.
The controller keeps the evaluation, the result files and the progress bar.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from dcctl.fleet.frames import StepRequest, WorkerExited, WorkerInit, read_frame, write_frame
from dcctl.fleet.outcome import AUTO_WORKERS, FleetOptions
from dcctl.fleet.signals import STOP_SIGNALS, stop_signals_deferred

# Below this many SSH hosts per worker, starting a worker (an interpreter that imports
# paramiko, ~0.3 s of CPU) costs more than it saves.
HOSTS_PER_WORKER = 128
MAX_AUTO_WORKERS = 16
# Workers told to stop (end of run) get this long, all together, before they are killed.
WORKER_EXIT_S = 5.0
# Then their readers get this long, all together, to pass on what the workers last said.
READER_DRAIN_S = 1.0
# The current directory, which `-c` puts first on sys.path, is dropped: a json.py there must
# not stand in for the standard library's. The package root is added (first, so the worker
# runs this very dcctl) only when not on the path already, as for a source checkout.
_BOOT = (
    "import sys\n"
    "root = sys.argv[1]\n"
    "if sys.path and sys.path[0] == '':\n"
    "    del sys.path[0]\n"
    "if root not in sys.path:\n"
    "    sys.path.insert(0, root)\n"
    "from dcctl.fleet.worker import main\n"
    "main()\n"
)
_PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
_STDERR_SHOWN_BYTES = 2000


# (pid of the worker it came from, message); a pid, not an index, so the last words of a
# worker that died cannot be taken for those of the one started in its place.
Inbox = queue.SimpleQueue[tuple[int, object]]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(requested: int, ssh_hosts: int, cpus: int) -> int:
    """How many worker processes: 1 means none, the controller holds the connections itself."""
    if requested != AUTO_WORKERS:
        return max(1, min(requested, ssh_hosts))
    return max(1, min(cpus, ssh_hosts // HOSTS_PER_WORKER, MAX_AUTO_WORKERS))


class WorkerProcess:
    """One worker: a child interpreter in a session of its own, so a Ctrl-C at the terminal (or
    a SIGHUP when it closes) reaches only the controller, which then stops each worker exactly
    once. systemd's SIGTERM reaches every process of its unit, workers too: they take it as the
    controller's stop (worker.py)."""

    def __init__(self, index: int, options: FleetOptions, inbox: Inbox) -> None:
        self.index = index
        self.alive = True
        # Closed in forget(): it lives as long as the worker.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        # Started with the stop signals blocked (a child inherits the signal mask): systemd
        # stopping a unit sends SIGTERM to every process in it, and a worker still starting up
        # must not die of it unheard. worker.main unblocks them once its handlers are set; a
        # signal that came meanwhile lands then, and stops its step as the controller's would.
        with stop_signals_deferred():
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(_PACKAGE_ROOT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                start_new_session=True,
            )
        self.pid = self._proc.pid
        self._reader = threading.Thread(
            target=self._read, args=(inbox,), name=f"dcctl-worker-{index}", daemon=True
        )
        self._reader.start()
        self.send(WorkerInit(options))

    @property
    def exit_code(self) -> int | None:
        return self._proc.returncode

    @property
    def stop_signal(self) -> int | None:
        """The stop signal (SIGINT, SIGTERM, SIGHUP) this worker died of, if it died of one."""
        code = self._proc.returncode
        return -code if code is not None and -code in STOP_SIGNALS else None

    def send(self, message: StepRequest | WorkerInit) -> bool:
        """False when the worker is gone; its reader reports why."""
        try:
            assert self._proc.stdin is not None
            write_frame(self._proc.stdin, message)
            return True
        except (OSError, ValueError):
            self.alive = False
            return False

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Stop the step in flight: any of the stop signals does (worker.py)."""
        # Through Popen: it never signals a pid already reaped (and perhaps reused).
        with contextlib.suppress(ProcessLookupError):
            self._proc.send_signal(signum)

    def request_exit(self) -> None:
        """The worker sees EOF, closes its connections and exits."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()

    def close(self) -> None:
        """Told to exit, given WORKER_EXIT_S to do so, then killed; its reader then gets
        READER_DRAIN_S to pass on its last words."""
        self.request_exit()
        self.end_by(time.monotonic() + WORKER_EXIT_S)
        self.forget(time.monotonic() + READER_DRAIN_S)

    def end_by(self, deadline: float) -> None:
        """Waits for the worker to exit until `deadline`, then kills it."""
        try:
            self._proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def forget(self, deadline: float) -> None:
        """Once the worker is gone: its reader is waited for until `deadline`, and its stderr
        file closed."""
        self._reader.join(max(0.0, deadline - time.monotonic()))
        self._stderr.close()

    def _read(self, inbox: Inbox) -> None:
        assert self._proc.stdout is not None
        try:
            while (message := read_frame(self._proc.stdout)) is not None:
                inbox.put((self.pid, message))
            detail = ""
        except Exception as exc:
            # Frames that stop making sense (torn by a death mid-write, or unreadable): the
            # worker is of no more use, and must not run on unheard.
            detail = f"{type(exc).__name__}: {exc}"
            self._proc.kill()
        self.alive = False
        inbox.put((self.pid, WorkerExited(self._exit_detail(detail))))

    def _exit_detail(self, detail: str) -> str:
        try:
            code = self._proc.wait(WORKER_EXIT_S)
        except subprocess.TimeoutExpired:
            code = None
        # pread: the child shares this file's offset, so seeking would move its writes.
        fd = self._stderr.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_SHOWN_BYTES)
        lines = os.pread(fd, size - start, start).decode(errors="replace").strip().splitlines()
        parts = [f"exit code {code}" if code is not None else "still running"]
        parts += [detail] if detail else []
        parts += [lines[-1].strip()] if lines else []
        return "; ".join(parts)


class WorkerPool:
    """The workers of one run, and which worker holds which host (fixed for the run, so later
    steps reuse the connections)."""

    def __init__(self, size: int, options: FleetOptions, inbox: Inbox) -> None:
        self._inbox = inbox
        self._options = replace(
            options, forks=math.ceil(options.forks / size), workers=1
        )  # each worker keeps its hosts in-process
        self._workers = [WorkerProcess(index, self._options, inbox) for index in range(size)]
        self._assignment: dict[str, int] = {}

    @property
    def size(self) -> int:
        return len(self._workers)

    def deal(self, names: Sequence[str]) -> dict[int, list[str]]:
        """Host names by worker index, dealt round-robin the first time each name is seen."""
        dealt: dict[int, list[str]] = {}
        for name in names:
            index = self._assignment.setdefault(name, len(self._assignment) % self.size)
            dealt.setdefault(index, []).append(name)
        return dealt

    def worker(self, index: int) -> WorkerProcess:
        """The worker at `index`, started afresh if the last one died (its connections with it)."""
        current = self._workers[index]
        if not current.alive:
            current.close()
            current = WorkerProcess(index, self._options, self._inbox)
            self._workers[index] = current
        return current

    def exit_codes(self) -> list[int | None]:
        """None for a worker still running; negative for one killed by that signal."""
        return [worker.exit_code for worker in self._workers]

    def stop_signal_of(self, pid: int) -> int | None:
        """The stop signal the worker `pid` of this pool died of, if it died of one."""
        return next((w.stop_signal for w in self._workers if w.pid == pid), None)

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Passed on as the controller got it, so the hosts' messages name the signal sent."""
        for worker in self._workers:
            worker.interrupt(signum)

    def close(self) -> None:
        """One deadline for all the workers, however many there are: a stop must end the run
        well within systemd's stop timeout (90 s by default), not one wait per worker."""
        for worker in self._workers:  # all told first, so they wind down together
            worker.request_exit()
        exit_by = time.monotonic() + WORKER_EXIT_S
        for worker in self._workers:
            worker.end_by(exit_by)
        drained_by = time.monotonic() + READER_DRAIN_S
        for worker in self._workers:
            worker.forget(drained_by)
