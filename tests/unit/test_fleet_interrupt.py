"""Ctrl-C during a fleet run: every host is accounted for, whatever moment it lands at."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.inventory.model import Host


def test_ctrl_c_while_a_result_is_being_recorded_loses_no_host(tmp_path: Path) -> None:
    names = [f"h{i}" for i in range(4)]
    hosts = [
        Host(name=name, address="localhost", connection="local", python=sys.executable)
        for name in names
    ]
    recorded: list[HostOutcome] = []

    def record(outcome: HostOutcome) -> None:
        if not recorded:  # Ctrl-C arrives while the first result is being written
            os.kill(os.getpid(), signal.SIGINT)
        recorded.append(outcome)

    previous = signal.getsignal(signal.SIGINT)
    try:
        with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts", forks=1)) as fleet:
            run = fleet.run(hosts, "facts", lambda _h: {"scratch_dir": str(tmp_path)}, 60, record)
        # A second Ctrl-C must not cut short saving what the first one kept.
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert run.interrupted
    assert sorted(o.host.name for o in recorded) == names  # each host exactly once
    assert recorded[0].error is None
    assert {o.error.kind for o in recorded[1:] if o.error} == {"interrupted"}
