"""Worker processes driven directly: a step in, outcomes out, a clean exit at end of run."""

from __future__ import annotations

import os
import queue
import signal
import sys
import time
from pathlib import Path

from dcctl.fleet.frames import Landed, StepDone, StepRequest, WorkerExited
from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.pool import Inbox, WorkerPool
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
