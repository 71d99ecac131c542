"""Ctrl-C during a fleet run: every host is accounted for, whatever moment it lands at."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.fleet.signals import STOP_SIGNALS
from dcctl.inventory.model import Host


@pytest.fixture(autouse=True)
def _stop_signals_restored() -> Iterator[None]:
    """An interrupted step leaves SIGINT, SIGTERM and SIGHUP ignored; later tests, and the
    processes they start (which inherit an ignored signal), must not be left with that."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


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


def _local_hosts(count: int) -> list[Host]:
    return [
        Host(name=f"h{i}", address="localhost", connection="local", python=sys.executable)
        for i in range(count)
    ]


def test_a_run_started_with_ctrl_c_ignored_is_not_stopped_by_it(tmp_path: Path) -> None:
    """Started in the background by a shell: a Ctrl-C for the foreground job is not for us."""
    recorded: list[HostOutcome] = []

    def record(outcome: HostOutcome) -> None:
        if not recorded:
            os.kill(os.getpid(), signal.SIGINT)
        recorded.append(outcome)

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts", forks=1)) as fleet:
            run = fleet.run(
                _local_hosts(2), "facts", lambda _h: {"scratch_dir": str(tmp_path)}, 60, record
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not run.interrupted
    assert [o.error for o in recorded] == [None, None]


def test_after_an_interrupted_step_later_steps_contact_no_host(tmp_path: Path) -> None:
    contacted = tmp_path / "contacted"
    toucher = tmp_path / "python"  # the node "interpreter" of the later step leaves a mark
    toucher.write_text(f'#!/bin/sh\ntouch {contacted}\nexec {sys.executable} "$@"\n')
    toucher.chmod(0o755)
    later_hosts = [
        Host(name=host.name, address=host.address, connection="local", python=str(toucher))
        for host in _local_hosts(2)
    ]
    recorded: list[HostOutcome] = []

    def interrupt_at_once(outcome: HostOutcome) -> None:
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.getsignal(signal.SIGINT)
    params = {"scratch_dir": str(tmp_path)}
    try:
        with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts", forks=1)) as fleet:
            first = fleet.run(_local_hosts(2), "facts", lambda _h: params, 60, interrupt_at_once)
            second = fleet.run(later_hosts, "facts", lambda _h: params, 60, recorded.append)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert first.interrupted and second.interrupted
    assert [(o.host.name, o.error.kind if o.error else None) for o in recorded] == [
        ("h0", "interrupted"), ("h1", "interrupted")
    ]  # fmt: skip
    assert not contacted.exists()
