"""A state dir that cannot take the run's files: the run goes on, the failure is kept and named.

Tests run as root, where permission bits stop no write: the read-only and full file systems
are real tmpfs mounts (skipped where mounting is not permitted).
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mounts import fill, tmpfs

from dcctl.fleet.outcome import FleetRun, HostOutcome
from dcctl.inventory.model import Host
from dcctl.playbook.session import StepSpec, run_step
from dcctl.results.document import (
    EXIT_FAILED,
    EXIT_HOST_ERROR,
    EXIT_NOT_SAVED,
    EXIT_OK,
    EXIT_TERMINATED,
    RunMeta,
    exit_code,
    run_document,
)
from dcctl.results.store import RunStore

STARTED = datetime(2026, 11, 28, 13, 35, 1, tzinfo=timezone.utc)
RUN_ID = "20261128T133501Z-check-abcd"


def test_a_state_dir_through_a_file_is_named_and_nothing_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = RunStore(blocker / "state", RUN_ID)
    assert store.write_host("gpu001", {"name": "gpu001"}) is None
    assert store.write_run({}) is None
    assert not store.run_saved
    assert store.error is not None
    assert str(store.error) == (
        f"cannot create {blocker / 'state'}: {blocker} is a file, not a directory"
    )
    assert store.error.remedy == "move that file away"


def test_a_read_only_state_dir_is_named_with_its_fix(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        store = RunStore(read_only / "state", RUN_ID)
        assert store.write_run({}) is None
    assert store.error is not None
    assert str(store.error) == f"cannot write {read_only / 'state'}: Read-only file system"
    assert store.error.remedy == "make it writable"


def test_a_disk_that_fills_mid_run_keeps_the_first_failure_and_saves_what_it_can(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "small", "size=64k") as small:
        store = RunStore(small / "state", RUN_ID)
        assert store.write_host("first", {"name": "first"}) is not None
        filler = fill(small)
        assert store.write_host("second", {"name": "second", "pad": "x" * 8192}) is None
        filler.unlink()  # space comes back: later files are written again
        assert store.write_run({"hosts": ["first", "second"]}) is not None
        hosts = sorted(p.name for p in (store.run_dir / "hosts").iterdir())
    assert store.error is not None
    assert store.error.path == store.run_dir / "hosts" / "second.json"
    assert store.error.remedy == "free space there"
    assert "No space left on device" in str(store.error)
    assert store.run_saved
    assert hosts == ["first.json"]  # no temporary file left behind


def _stores_opened_at_once(state: Path, racers: int) -> list[RunStore]:
    """`racers` runs, each in its own thread, open their store on `state` at the same moment."""
    start = threading.Barrier(racers)
    stores: list[RunStore] = []

    def open_store(index: int) -> None:
        start.wait()
        stores.append(RunStore(state, f"{RUN_ID}-{index}"))

    threads = [threading.Thread(target=open_store, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return stores


def test_runs_that_start_together_on_a_fresh_state_dir_all_save(tmp_path: Path) -> None:
    """Two cron jobs on a new machine both create `runs/` at the same moment: the one that
    finds it made by the other is not a run that could not be saved (exit 4). Raced many
    times, since one race may not overlap."""
    racers = 8
    for round_ in range(25):
        state = tmp_path / f"state-{round_}"
        stores = _stores_opened_at_once(state, racers)
        assert [str(s.error) for s in stores if s.error is not None] == []
        assert len(list((state / "runs").iterdir())) == racers
        for directory in (state, state / "runs"):
            assert directory.stat().st_mode & 0o777 == 0o700


def test_a_state_dir_that_exists_keeps_its_mode(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o750)
    store = RunStore(state, RUN_ID)
    assert store.write_run({}) is not None
    assert state.stat().st_mode & 0o777 == 0o750
    assert store.run_dir.stat().st_mode & 0o777 == 0o700


class _LandEveryHost:
    """A fleet whose hosts all answer at once with an empty payload."""

    def run(
        self, hosts: Any, task: str, params_for: Any, timeout_s: float, on_outcome: Any
    ) -> FleetRun:
        for host in hosts:
            on_outcome(HostOutcome(host, {}, None, 0.1))
        return FleetRun()


def test_a_run_that_cannot_be_saved_still_returns_every_result(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    hosts = [Host(name=f"h{i}", address="10.0.0.1") for i in range(3)]
    spec = StepSpec("check", "facts", lambda _h: {}, lambda _h, _f: [], 60.0)
    landed: list[str] = []
    step = run_step(
        spec, hosts, "inv.yaml", blocker, _LandEveryHost(),  # type: ignore[arg-type]
        lambda name, _status: landed.append(name),
    )  # fmt: skip
    assert [h["name"] for h in step.document["hosts"]] == ["h0", "h1", "h2"]
    assert landed == ["h0", "h1", "h2"]
    assert step.save_error is not None and not step.run_saved
    assert exit_code(step.document, saved=False) == EXIT_NOT_SAVED


def _document(status: str, **counts: int) -> dict[str, Any]:
    meta = RunMeta(RUN_ID, "check", "inv.yaml", STARTED)
    document = run_document(meta, [], status == "interrupted", STARTED)
    document["summary"].update(counts)
    return document


def test_not_saved_is_its_own_exit_code_below_a_stop_a_failure_and_a_host_error() -> None:
    assert exit_code(_document("passed"), saved=False) == EXIT_NOT_SAVED == 4
    # A cron job on a read-only state dir must still learn that a host was unreachable.
    assert exit_code(_document("error", error=1), saved=False) == EXIT_HOST_ERROR
    assert exit_code(_document("error", error=1)) == EXIT_HOST_ERROR
    assert exit_code(_document("failed", failed=1), saved=False) == EXIT_FAILED
    assert exit_code(_document("interrupted"), stop_signal=15, saved=False) == EXIT_TERMINATED
    assert exit_code(_document("passed")) == EXIT_OK
