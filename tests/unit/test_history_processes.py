"""The history with real processes: two writers at once, and a writer killed by SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from datetime import datetime, timedelta, timezone
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any

from dcctl.results.history import History

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
HOSTS_PER_WRITER = 150
# fork: the children need nothing but this module's functions, and start in milliseconds.
_CONTEXT = multiprocessing.get_context("fork")


def host_doc(name: str, value: float) -> dict[str, Any]:
    return {
        "name": name,
        "status": "passed",
        "error": None,
        "duration_s": 0.1,
        "facts": {"gpus": []},
        "results": [
            {"id": "bench.allreduce", "kind": "bench", "status": "pass", "message": "ok",
             "metrics": {"busbw_gbs": value, "algbw_gbs": value / 2}},
        ],
    }  # fmt: skip


def _writer(state_dir: Path, name: str, start: Barrier) -> None:
    run_id = f"run-{name}"
    with History.open(state_dir) as history:
        start.wait()
        history.begin_run(run_id, "audit", None, "inv", T0, state_dir / "runs" / run_id)
        history.begin_step(run_id, 0, "allreduce", "bench", T0)
        for index in range(HOSTS_PER_WRITER):
            history.record_host(run_id, 0, host_doc(f"{name}-{index:03}", index), T0)
        history.finish_step(run_id, 0, "passed", T0)
        history.finish_run(run_id, "passed", T0 + timedelta(minutes=1))


def test_two_writer_processes_at_once_keep_every_row(tmp_path: Path) -> None:
    start = _CONTEXT.Barrier(2)
    # Both processes also race to create and migrate the file.
    writers = [
        _CONTEXT.Process(target=_writer, args=(tmp_path, name, start)) for name in ("a", "b")
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
    assert [writer.exitcode for writer in writers] == [0, 0]

    with History.open(tmp_path) as history:
        runs = history.runs()
        assert sorted((run.run_id, run.status, run.hosts) for run in runs) == [
            ("run-a", "passed", HOSTS_PER_WRITER),
            ("run-b", "passed", HOSTS_PER_WRITER),
        ]
        series = history.series(None, "*busbw*", None)
    assert len(series) == 2 * HOSTS_PER_WRITER
    db = sqlite3.connect(tmp_path / "history.sqlite")
    assert db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 4 * HOSTS_PER_WRITER


def _killed_writer(state_dir: Path, recorded: Event, never: Event) -> None:
    with History.open(state_dir) as history:
        history.begin_run("doomed", "audit", None, "inv", T0, state_dir / "runs" / "doomed")
        history.begin_step("doomed", 0, "allreduce", "bench", T0)
        for index in range(3):
            history.record_host("doomed", 0, host_doc(f"n{index}", 100 + index), T0)
        recorded.set()
        never.wait()  # killed here, between two hosts


def test_a_writer_killed_by_sigkill_leaves_an_incomplete_run(tmp_path: Path) -> None:
    recorded, never = _CONTEXT.Event(), _CONTEXT.Event()
    writer = _CONTEXT.Process(target=_killed_writer, args=(tmp_path, recorded, never))
    writer.start()
    try:
        assert recorded.wait(timeout=60)
        with History.open(tmp_path) as history:
            assert history.runs()[0].status == "running"
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.join(timeout=60)
    assert writer.exitcode == -signal.SIGKILL

    with History.open(tmp_path) as history:
        [run] = history.runs()
        assert (run.run_id, run.status, run.finished_at, run.hosts) == ("doomed", "incomplete",
                                                                         None, 3)  # fmt: skip
        assert len(history.series(None, "*busbw*", None)) == 3
        # The history is still writable: the dead writer's lock went with it.
        history.begin_run("next", "audit", None, "inv", T0, tmp_path / "runs" / "next")
        assert history.previous_run("audit", "next") is None
