"""SIGTERM and SIGHUP end a fleet run as Ctrl-C does: every host accounted for, nothing lost.

Each test first points the signal at a handler that raises, so that without dcctl's own
handling the test fails with an exception instead of killing the test run.
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from processes import process_alive, wait_for

from dcctl.fleet.executor import Fleet
from dcctl.fleet.frames import Landed, StepDone, StepRequest
from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.fleet.pool import Inbox, WorkerPool
from dcctl.fleet.signals import StopRequest, stop_signals_set
from dcctl.inventory.model import Host
from dcctl.results.document import RunMeta, exit_code, run_document, stopped_exit_code

STOPS = [signal.SIGTERM, signal.SIGHUP]
STARTED = datetime(2026, 11, 28, 13, 35, 1, tzinfo=timezone.utc)


class SignalNotHandled(Exception):
    pass


def _not_handled(signum: int, _frame: object) -> None:
    raise SignalNotHandled(signal.Signals(signum).name)


@pytest.fixture
def guarded() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise here unless something else handles them."""
    previous = {sig: signal.signal(sig, _not_handled) for sig in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _local_hosts(count: int, python: str = sys.executable) -> list[Host]:
    return [
        Host(name=f"h{i}", address="localhost", connection="local", python=python)
        for i in range(count)
    ]


def _options(tmp_path: Path, forks: int = 1) -> FleetOptions:
    return FleetOptions(trusted_keys_file=tmp_path / "known_hosts", forks=forks)


@pytest.mark.parametrize("stop", STOPS, ids=lambda s: signal.Signals(s).name)
def test_a_stop_signal_during_a_step_loses_no_host(
    tmp_path: Path, guarded: None, stop: int
) -> None:
    recorded: list[HostOutcome] = []

    def record(outcome: HostOutcome) -> None:
        if not recorded:  # the signal arrives while the first result is being recorded
            os.kill(os.getpid(), stop)
        recorded.append(outcome)

    with Fleet(_options(tmp_path)) as fleet:
        run = fleet.run(
            _local_hosts(4), "facts", lambda _h: {"scratch_dir": str(tmp_path)}, 60, record
        )
    # A second signal must not cut short the saving of what the first one kept.
    assert signal.getsignal(stop) == signal.SIG_IGN
    assert run.interrupted
    assert sorted(o.host.name for o in recorded) == ["h0", "h1", "h2", "h3"]
    assert recorded[0].error is None
    errors = [o.error for o in recorded[1:]]
    assert {e.kind for e in errors if e} == {"interrupted"}
    # Those never started say what stopped them.
    assert any(signal.Signals(stop).name in e.message for e in errors if e)


def test_a_stop_before_the_step_contacts_no_host(tmp_path: Path, guarded: None) -> None:
    """Stopped once the hosts were selected but before the step began (a stop while the
    inventory is still read ends the process at once instead): the step starts none of its
    hosts, and reports each of them interrupted."""
    contacted = tmp_path / "contacted"
    toucher = tmp_path / "python"
    toucher.write_text(f'#!/bin/sh\ntouch {contacted}\nexec {sys.executable} "$@"\n')
    toucher.chmod(0o755)
    stop = StopRequest()
    stop.request(signal.SIGTERM)
    recorded: list[HostOutcome] = []
    with Fleet(_options(tmp_path), stop) as fleet:
        run = fleet.run(_local_hosts(2, str(toucher)), "facts", lambda _h: {}, 60, recorded.append)
    assert run.interrupted
    assert [(o.host.name, o.error.kind if o.error else None) for o in recorded] == [
        ("h0", "interrupted"), ("h1", "interrupted")
    ]  # fmt: skip
    assert "SIGTERM" in recorded[0].error.message  # type: ignore[union-attr]
    assert not contacted.exists()


def test_a_node_task_killed_by_the_same_sigterm_is_interrupted_not_broken(
    tmp_path: Path, guarded: None, slow_python: tuple[Path, Path]
) -> None:
    """systemd stops a unit with SIGTERM to each of its processes: local node tasks die of it,
    maybe before the controller hears its own. Their hosts were interrupted, not broken."""
    script, pid_file = slow_python
    recorded: list[HostOutcome] = []
    task_killed: list[bool] = []

    def systemd_stop() -> None:
        started = wait_for(pid_file.exists, 30)
        if started:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)  # the task first, the worst case
        task_killed.append(started)
        os.kill(os.getpid(), signal.SIGTERM)  # even if not: the run must end either way

    stop = StopRequest()
    killer = threading.Thread(target=systemd_stop)
    killer.start()
    try:
        # As the command line does: the signals handled for the whole command, not one step.
        with stop_signals_set(stop), Fleet(_options(tmp_path), stop) as fleet:
            hosts = _local_hosts(1, str(script))
            run = fleet.run(hosts, "facts", lambda _h: {}, 60, recorded.append)
    finally:
        killer.join()
    assert task_killed == [True], "the node task never started: the case was not tested"
    assert run.interrupted
    (outcome,) = recorded
    assert outcome.error is not None
    assert outcome.error.kind == "interrupted", outcome.error.message


@pytest.mark.parametrize(
    ("stop", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129), (None, 130)],
)
def test_a_stopped_run_exits_with_the_shell_code_of_its_signal(stop: int | None, code: int) -> None:
    assert stopped_exit_code(stop) == code
    # Whatever else the run found: a stop outranks a failure, a host error and "not saved".
    meta = RunMeta("20261128T133501Z-check-abcd", "check", "inv.yaml", STARTED)
    document = run_document(meta, [], interrupted=True, finished_at=STARTED)
    document["summary"].update(failed=1, error=1)
    assert exit_code(document, stop_signal=stop, saved=False) == code


def _collect(inbox: Inbox, done: int = 1) -> tuple[list[Landed], list[object]]:
    landed: list[Landed] = []
    other: list[object] = []
    while done:
        _pid, message = inbox.get(timeout=60)
        if isinstance(message, Landed):
            landed.append(message)
        elif isinstance(message, StepDone):
            done -= 1
        else:
            other.append(message)
            done = 0
    return landed, other


def test_a_worker_sent_sigterm_reports_its_hosts_interrupted_and_lives_on(
    tmp_path: Path, slow_python: tuple[Path, Path]
) -> None:
    """systemd's SIGTERM reaches the SSH worker processes too: each must report what it has
    (its hosts interrupted) instead of dying with them unreported."""
    script, pid_file = slow_python
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, _options(tmp_path), inbox)
    try:
        worker = pool.worker(0)
        host = Host(name="stuck", address="localhost", connection="local", python=str(script))
        assert worker.send(StepRequest(1, "facts", [(host, {})], 600.0))
        assert wait_for(pid_file.exists, 30), "task never started"
        os.kill(worker.pid, signal.SIGTERM)
        landed, other = _collect(inbox)
        assert process_alive(worker.pid)
    finally:
        pool.close()
    assert other == []
    (message,) = landed
    assert message.outcome.error is not None
    assert message.outcome.error.kind == "interrupted"
    assert pool.exit_codes() == [0]
    assert wait_for(lambda: not process_alive(int(pid_file.read_text())), 10)


def test_a_worker_sent_sigterm_while_starting_up_does_not_die_unheard(tmp_path: Path) -> None:
    """The signal lands before the worker's handlers are set: it waits for them, and then stops
    the worker's step like any other stop (its hosts interrupted, none contacted)."""
    contacted = tmp_path / "contacted"
    toucher = tmp_path / "python"
    toucher.write_text(f'#!/bin/sh\ntouch {contacted}\nexec {sys.executable} "$@"\n')
    toucher.chmod(0o755)
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, _options(tmp_path), inbox)
    try:
        worker = pool.worker(0)
        os.kill(worker.pid, signal.SIGTERM)  # at once: the interpreter is still starting
        host = Host(name="h0", address="localhost", connection="local", python=str(toucher))
        assert worker.send(StepRequest(1, "facts", [(host, {})], 60.0))
        landed, other = _collect(inbox)
    finally:
        pool.close()
    assert other == []
    assert [m.outcome.error.kind for m in landed if m.outcome.error] == ["interrupted"]
    assert pool.exit_codes() == [0]
    assert not contacted.exists()
