"""What a fleet run is told (options, a stop request) and what it gives back (one outcome per
host)."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.transport.base import HostError

# 0 for --workers: let the host count and the CPUs decide.
AUTO_WORKERS = 0
# The signals that end a run as Ctrl-C does: a person (SIGINT), `timeout`, `kill` and systemd
# stopping a unit (SIGTERM), the terminal closed under the run (SIGHUP).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class FleetOptions:
    trusted_keys_file: Path
    forks: int = 64
    connect_timeout_s: float = 10.0
    accept_new_host_keys: bool = False
    workers: int = AUTO_WORKERS


@dataclass(frozen=True)
class HostOutcome:
    host: Host
    payload: dict[str, Any] | None
    error: HostError | None
    duration_s: float


@dataclass
class FleetRun:
    """How a run ended; the outcomes themselves went to the caller as they landed."""

    interrupted: bool = False


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
