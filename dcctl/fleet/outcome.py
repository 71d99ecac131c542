"""What a fleet run is told (options) and what it gives back (one outcome per host)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.transport.base import HostError

# 0 for --workers: let the host count and the CPUs decide.
AUTO_WORKERS = 0


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
