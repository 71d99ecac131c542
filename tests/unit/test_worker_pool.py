"""Worker processes driven directly: a step in, outcomes out, a clean exit at end of run."""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from pathlib import Path
from typing import Any

from processes import process_state, wait_for

from dcctl.fleet.frames import Landed, StepDone, StepRequest, WorkerExited
from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.pool import READER_DRAIN_S, WORKER_EXIT_S, Inbox, WorkerPool
from dcctl.inventory.model import Host


def _collect(inbox: Inbox, workers: int) -> tuple[list[Landed], list[object]]:
    landed: list[Landed] = []
    other: list[object] = []
    done = 0
    give_up_at = time.monotonic() + 60
    while done < workers and time.monotonic() < give_up_at:
        _pid, message = inbox.get(timeout=60)
        if isinstance(message, Landed):
            landed.append(message)
        elif isinstance(message, StepDone):
            done += 1
        else:
            other.append(message)
            done += isinstance(message, WorkerExited)
    return landed, other


def test_workers_run_their_hosts_and_exit_by_themselves_at_end_of_run(tmp_path: Path) -> None:
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(2, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    hosts = {
        f"h{i}": Host(name=f"h{i}", address="localhost", connection="local", python=sys.executable)
        for i in range(4)
    }
    try:
        dealt = pool.deal(list(hosts))
        assert dealt == {0: ["h0", "h2"], 1: ["h1", "h3"]}
        for index, names in dealt.items():
            params = {"scratch_dir": str(tmp_path)}
            request = StepRequest(1, "facts", [(hosts[n], params) for n in names], 60.0)
            assert pool.worker(index).send(request)
        landed, other = _collect(inbox, workers=2)
    finally:
        pool.close()
    assert other == []
    assert sorted(m.outcome.host.name for m in landed) == sorted(hosts)
    assert all(m.outcome.error is None and m.outcome.payload for m in landed)
    # Told to stop by EOF, each worker exits on its own (a kill would read -9).
    assert pool.exit_codes() == [0, 0]


def test_a_dead_worker_is_replaced_for_the_next_step(tmp_path: Path) -> None:
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    try:
        first = pool.worker(0)
        os.kill(first.pid, signal.SIGKILL)
        pid, message = inbox.get(timeout=30)
        assert pid == first.pid and isinstance(message, WorkerExited)
        assert "exit code -9" in message.detail
        second = pool.worker(0)
        assert second.pid != first.pid and second.alive
    finally:
        pool.close()


def _local_host(name: str, python: str = sys.executable) -> Host:
    return Host(name=name, address="localhost", connection="local", python=python)


def test_workers_ignore_modules_in_the_current_directory(tmp_path: Path, monkeypatch: Any) -> None:
    """`python -c` puts the current directory first: a json.py there must not break workers."""
    shadow = tmp_path / "cwd"
    shadow.mkdir()
    for module in ("json", "queue", "pickle"):
        (shadow / f"{module}.py").write_text("raise SystemExit('shadowed stdlib imported')\n")
    monkeypatch.chdir(shadow)
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    try:
        host = _local_host("h0")
        request = StepRequest(1, "facts", [(host, {"scratch_dir": str(tmp_path)})], 60.0)
        assert pool.worker(0).send(request)
        landed, other = _collect(inbox, workers=1)
    finally:
        pool.close()
    assert other == []
    assert [m.outcome.error for m in landed] == [None]


def test_a_worker_started_with_ctrl_c_ignored_still_stops_when_told(
    tmp_path: Path, slow_python: tuple[Path, Path]
) -> None:
    """A controller started in the background by a shell has SIGINT ignored; its workers
    inherit that, yet must still stop a step when the controller says so."""
    inbox: Inbox = queue.SimpleQueue()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        pool = WorkerPool(1, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        script, pid_file = slow_python
        host = _local_host("stuck", python=str(script))
        assert pool.worker(0).send(StepRequest(1, "facts", [(host, {})], 600.0))
        assert wait_for(pid_file.exists, 30), "task never started"
        pool.interrupt()
        landed, other = _collect(inbox, workers=1)
    finally:
        pool.close()
    assert other == []
    assert [m.outcome.error.kind for m in landed if m.outcome.error] == ["interrupted"]


def test_stuck_workers_share_one_deadline_then_are_killed(tmp_path: Path) -> None:
    """Workers that do not exit when told (here: stopped with SIGSTOP) are waited for together,
    not one after another: 16 of them must not hold a stopped run past systemd's 90 s."""
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(4, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    pids = [pool.worker(index).pid for index in range(pool.size)]
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        assert wait_for(lambda: all(process_state(pid) == "T" for pid in pids), 30)
    finally:
        began = time.monotonic()
        pool.close()
        took_s = time.monotonic() - began
    assert pool.exit_codes() == [-signal.SIGKILL] * len(pids)
    assert took_s < WORKER_EXIT_S + READER_DRAIN_S + 2.0, took_s
