"""One fio command under a deadline: started in a session of its own, watched, stopped.

Stopping it means killing fio and each job process it forked (see fio_kill); the cleanup guard
is told fio's process group so it can do the same if the task itself is killed.
Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

from dcctl.node.bench.fio_kill import kill_run, wait_gone
from dcctl.node.bench.fio_reaper import Guard

# How often the watch loop looks at fio, the stop flag and the clock.
POLL_S = 0.1
# A killed job process is gone once its last I/O completes; this long at most is waited for.
GONE_WAIT_S = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopFlag:
    """Set by the first stop signal (SIGINT, SIGTERM, SIGHUP) the task receives."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def name(self) -> str:
        return "a stop signal" if self.signum is None else signal.Signals(self.signum).name


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """While inside, a stop signal only sets the flag, so fio is stopped and its files removed
    before the task returns, instead of the default SIGTERM death that skips every `finally`."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # handlers can only be set from the main thread; the caller's stay
        return

    def record(signum: int, _frame: object) -> None:
        if flag.signum is None:
            flag.signum = signum

    previous = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    for stop in STOP_SIGNALS:
        signal.signal(stop, record)
    try:
        yield flag
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, signal.SIG_DFL if handler is None else handler)


class Outcome(NamedTuple):
    """How a fio run ended: "exited" (with its returncode), "deadline" or "stopped"."""

    ending: str
    returncode: int | None
    elapsed_s: float


def _kill(process: subprocess.Popen[bytes], job_dir: str) -> None:
    kill_run(process.pid, job_dir)
    process.wait()
    wait_gone(job_dir, GONE_WAIT_S)


def run_watched(
    argv: list[str], job_dir: str, log_path: str, stop_at: float, stop: StopFlag,
    guard: Guard | None, on_tick: Callable[[float], None], tick_s: float,
) -> Outcome:  # fmt: skip
    """Run fio on `job_dir` until it exits, `stop_at` (a time.monotonic() value) passes or
    `stop` is set.

    Its stdout and stderr go to `log_path`; `on_tick(elapsed_s)` is called every `tick_s`.
    """
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    if guard is not None:
        guard.watch(process.pid)
    started = time.monotonic()
    next_tick = started + tick_s
    try:
        while True:
            try:
                code = process.wait(timeout=POLL_S)
                return Outcome("exited", code, time.monotonic() - started)
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            if stop.signum is not None or now >= stop_at:
                _kill(process, job_dir)
                ending = "stopped" if stop.signum is not None else "deadline"
                return Outcome(ending, None, now - started)
            if now >= next_tick:
                on_tick(now - started)
                next_tick += tick_s
    finally:
        if process.poll() is None:
            _kill(process, job_dir)  # an exception in a tick: fio must not outlive this call
        if guard is not None:
            guard.release()
