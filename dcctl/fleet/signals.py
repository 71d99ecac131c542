"""Stop signals: SIGINT, SIGTERM and SIGHUP end a run the same way, whenever they come.

A handler only records the stop (StopRequest); whoever runs the work winds it down, so a signal
never raises in the middle of saving a host's result or the run document.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

# The signals that end a run as Ctrl-C does: a person (SIGINT), `timeout`, `kill` and systemd
# stopping a unit (SIGTERM), the terminal closed under the run (SIGHUP).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

SignalHandler = Callable[[int, FrameType | None], Any] | int | None


class StopRequest:
    """The run was asked to stop, and by which signal: set once, by whichever comes first.

    Shared by whoever receives the signals (the command line, a worker process) and the fleet
    that winds the run down, so a stop that comes before a step, during it or between two
    steps ends the run the same way.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def request(self, signum: int) -> None:
        if not self._event.is_set():
            self.signum = signum
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str:
        """What stopped the run, as a person reads it: "SIGTERM"."""
        return "a stop request" if self.signum is None else signal.Signals(self.signum).name


def handle_stop_signals(stop: StopRequest, keep_ignored: bool = True) -> dict[int, SignalHandler]:
    """From now on SIGINT, SIGTERM and SIGHUP set `stop` instead of raising where they land or
    killing the process: either would lose what is being saved at that moment (a host's result,
    the run document). Returns the handlers replaced.

    With `keep_ignored`, a signal the process started with ignored stays ignored: SIGINT in a
    run started in the background by a shell (a Ctrl-C meant for the foreground job), SIGHUP
    under nohup. Only the main thread may set handlers; elsewhere the signals stay the
    caller's business.
    """
    return _set_stop_handlers(lambda number, _frame: stop.request(number), keep_ignored)


def _set_stop_handlers(
    handler: SignalHandler, keep_ignored: bool = True
) -> dict[int, SignalHandler]:
    """`handler` for each stop signal (in the main thread only); returns the handlers replaced.
    With `keep_ignored`, a signal ignored now stays ignored."""
    replaced: dict[int, SignalHandler] = {}
    if threading.current_thread() is not threading.main_thread():
        return replaced
    for signum in STOP_SIGNALS:
        if keep_ignored and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        replaced[signum] = signal.signal(signum, handler)
    return replaced


@contextlib.contextmanager
def stop_signals_set(stop: StopRequest) -> Iterator[None]:
    """handle_stop_signals() while inside; after a stop, the signals stay ignored."""
    replaced = handle_stop_signals(stop)
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            # After a stop, a second signal must not cut short the saving of what the first kept.
            restored = handler if handler is not None else signal.SIG_DFL
            signal.signal(signum, signal.SIG_IGN if stop.is_set() else restored)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """A stop signal that comes while inside (in this thread) waits until it is left.

    For writes that must go out whole: a signal landing in a blocked write to a pipe can cut
    it short without a word (CPython's buffered writer then returns a short count, which a
    text stream drops). And for starting a child process, which inherits the signal mask: it
    starts with the stop signals held, until it unblocks them itself.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def leave_on_stop_signals() -> None:
    """Until a run takes the signals over (start-up, parsing, reading the inventory, selecting
    hosts, commands that run no hosts), a stop signal ends the process at once with the shell's
    128 + signal number: nothing has been measured, so there is nothing to save, and Click would
    report a Ctrl-C as exit 1, which reads as "a check failed". Raising where it lands also
    breaks out of a read that would block for ever (a FIFO nobody writes, a hung NFS mount),
    which a handler that only notes the stop could not: Python retries the read. Signals
    ignored at start stay ignored."""
    _set_stop_handlers(_leave)


def ignore_stop_signals() -> None:
    """From now until the process exits, the stop signals are ignored: for when its work is
    done and shown (the run saved, the output written), so that a signal that comes before the
    exit cannot change the exit code of a run that is over. One pending, held back by
    stop_signals_deferred(), is discarded."""
    _set_stop_handlers(signal.SIG_IGN)


def _leave(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
