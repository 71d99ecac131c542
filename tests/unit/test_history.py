"""The history database on real SQLite: what is recorded, read back, migrated and refused."""

from __future__ import annotations

import sqlite3
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dcctl.results.history import CLUSTER_HOST, History, HistoryError
from dcctl.results.history_query import Finding, trend
from dcctl.results.history_schema import MIGRATIONS, SCHEMA_VERSION

T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def host_doc(
    name: str, tflops: float, status: str = "passed", result_status: str = "pass"
) -> dict[str, Any]:
    return {
        "name": name,
        "address": name,
        "status": status,
        "error": {"kind": "timeout", "message": "no answer in 60 s"} if status == "error" else None,
        "duration_s": 1.5,
        "facts": {
            "driver": "550.54.15",
            "kernel": "6.8.0",
            "gpus": [{"name": "NVIDIA H100 80GB HBM3", "vbios": "96.00.99"}],
        },
        "results": [
            {"id": "driver.version", "kind": "check", "status": "pass", "message": "driver ok"},
            {
                "id": "bench.gemm.bf16",
                "kind": "bench",
                "status": result_status,
                "message": f"{tflops} TFLOP/s",
                "gpu": {"index": 0, "pci_bus_id": None, "serial": None},
                "metrics": {"tflops": tflops, "efficiency": tflops / 1000},
                "step": "gemm",
            },
        ],
    }


def record_run(
    history: History, run_id: str, at: datetime, docs: list[dict[str, Any]], finish: bool = True
) -> None:
    history.begin_run(run_id, "audit", "audit.yaml", "rack.yaml", at, Path("/nowhere") / run_id)
    history.begin_step(run_id, 0, "gemm", "bench", at)
    for doc in docs:
        history.record_host(run_id, 0, doc, at)
    history.finish_step(run_id, 0, "passed", at)
    if finish:
        history.finish_run(run_id, "passed", at + timedelta(seconds=30))


@pytest.fixture
def history(tmp_path: Path) -> Any:
    with History.open(tmp_path / "state") as opened:
        yield opened


def test_a_new_history_is_private_and_current(tmp_path: Path) -> None:
    with History.open(tmp_path / "state") as history:
        assert stat.S_IMODE(history.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    db = sqlite3.connect(tmp_path / "state" / "history.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_runs_series_and_findings_read_back(history: History) -> None:
    for hour in range(3):
        docs = [host_doc("gpu1", 700 + hour), host_doc("gpu2", 650, result_status="warn")]
        record_run(history, f"r{hour}", T0 + timedelta(hours=hour), docs)

    runs = history.runs()
    assert [run.run_id for run in runs] == ["r2", "r1", "r0"]
    assert {run.status for run in runs} == {"passed"} and runs[0].hosts == 2
    [gpu1] = history.series("gpu1", "*tflops", None)
    assert (gpu1.metric, gpu1.gpu_index) == ("bench.gemm.bf16.tflops", 0)
    assert [value for _, value in gpu1.points] == [700, 701, 702]
    assert gpu1.points[0][0] == T0
    assert trend(gpu1).change_pct == pytest.approx(2 / 700 * 100)
    assert len(history.series("gpu*", None, T0 + timedelta(hours=1))) == 4
    assert history.findings("r2") == [
        Finding("gpu2", "bench.gemm.bf16", 0, "warn", "650 TFLOP/s", "gemm")
    ]


def test_a_host_error_is_a_finding(history: History) -> None:
    record_run(history, "r0", T0, [host_doc("gpu1", 700, status="error")])
    assert Finding("gpu1", "host", None, "error", "no answer in 60 s", "gemm") in (
        history.findings("r0")
    )


def test_baselines_come_from_passing_hosts_and_figures_before_the_run(history: History) -> None:
    record_run(history, "r0", T0, [host_doc("gpu1", 100)])
    record_run(history, "r1", T0 + timedelta(hours=1), [host_doc("gpu1", 200, status="failed")])
    record_run(
        history, "r2", T0 + timedelta(hours=2), [host_doc("gpu1", 300, result_status="fail")]
    )
    record_run(
        history, "r3", T0 + timedelta(hours=3), [host_doc("gpu1", 400, result_status="warn")]
    )
    record_run(history, "r4", T0 + timedelta(hours=4), [host_doc("gpu1", 500)])

    found = history.baselines(["gpu1", "gpu-unknown"], 5, "r4")
    assert found["gpu1"][("bench.gemm.bf16.tflops", 0)] == [400, 100]
    assert found["gpu-unknown"] == {}
    assert history.baselines(["gpu1"], 1, "r4")["gpu1"][("bench.gemm.bf16.tflops", 0)] == [400]


def test_previous_run_is_the_latest_finished_one(history: History) -> None:
    record_run(history, "r0", T0, [host_doc("gpu1", 1)])
    record_run(history, "r1", T0 + timedelta(hours=1), [host_doc("gpu1", 1)])
    record_run(history, "r2", T0 + timedelta(hours=2), [host_doc("gpu1", 1)], finish=False)
    record_run(history, "r3", T0 + timedelta(hours=3), [host_doc("gpu1", 1)], finish=False)
    assert history.previous_run("audit", "r3", playbook="audit.yaml") == "r1"
    assert history.previous_run("audit", "r1", playbook="audit.yaml") == "r0"
    assert history.previous_run("audit", "r0", playbook="audit.yaml") is None
    assert history.previous_run("check", "r3", playbook="audit.yaml") is None
    # The built-in audit (no playbook file) is another playbook than audit.yaml.
    assert history.previous_run("audit", "r3") is None


def test_previous_findings_are_each_hosts_own_last_audit(history: History) -> None:
    ecc = {"id": "ecc", "kind": "check", "status": "fail", "message": "ecc"}
    failing = {**host_doc("gpu1", 1), "status": "failed", "results": [ecc]}
    record_run(history, "r0", T0, [failing, host_doc("gpu2", 1)])
    # An audit of gpu2 alone in between must not hide gpu1's last findings.
    record_run(history, "r1", T0 + timedelta(hours=1), [host_doc("gpu2", 1)])
    record_run(history, "r2", T0 + timedelta(hours=2), [host_doc("gpu1", 1)], finish=False)
    found = history.previous_findings("audit", "r2", "audit.yaml", ["gpu1", "gpu2", "gpu3"])
    assert {host: [f.result_id for f in listed] for host, listed in found.items()} == {
        "gpu1": ["ecc"], "gpu2": []
    }  # fmt: skip


def test_cluster_results_trend_under_the_cluster_host(history: History) -> None:
    record_run(history, "r0", T0, [])
    verdict = {"id": "cluster.allreduce", "kind": "bench", "status": "fail", "message": "slow",
               "metrics": {"busbw_gbs": 180.0}}  # fmt: skip
    history.record_cluster_results("r0", 0, [verdict])
    [series] = history.series(CLUSTER_HOST, None, None)
    assert series.metric == "cluster.allreduce.busbw_gbs"
    assert history.findings("r0")[0].host == CLUSTER_HOST
    assert history.runs()[0].hosts == 0


def test_identical_passing_results_are_stored_once(history: History) -> None:
    for hour in range(5):
        record_run(history, f"r{hour}", T0 + timedelta(hours=hour), [host_doc("gpu1", 700)])
    db = sqlite3.connect(history.path)
    assert db.execute("SELECT count(*) FROM result_sets").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM version_sets").fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM host_runs").fetchone()[0] == 5


def test_a_host_recorded_twice_in_a_step_is_replaced(history: History) -> None:
    record_run(history, "r0", T0, [host_doc("gpu1", 700, result_status="warn")])
    history.record_host("r0", 0, host_doc("gpu1", 710), T0)
    [series] = history.series("gpu1", "*tflops", None)
    assert [value for _, value in series.points] == [710]
    assert history.findings("r0") == []


def test_prune_forgets_old_runs_and_names_their_directories(history: History) -> None:
    for day in range(4):
        record_run(history, f"r{day}", T0 + timedelta(days=day), [host_doc("gpu1", 700 + day)])
    removed = history.prune(1.5, T0 + timedelta(days=3))
    assert removed == [Path("/nowhere/r0"), Path("/nowhere/r1")]
    assert [run.run_id for run in history.runs()] == ["r3", "r2"]
    [series] = history.series("gpu1", "*tflops", None)
    assert [value for _, value in series.points] == [702, 703]


def test_an_unknown_run_is_an_error_not_a_crash(history: History) -> None:
    with pytest.raises(HistoryError, match="never begun"):
        history.record_host("nope", 0, host_doc("gpu1", 1), T0)


def test_a_version_1_history_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.executescript(
        "INSERT INTO runs VALUES (1, 'old', 'check', NULL, 'inv', 1700000000, 1700000010,"
        " 'passed', '/x', 1, NULL, 'h');"
        "INSERT INTO hosts VALUES (1, 'gpu1'); INSERT INTO metric_names VALUES (1, 'm.tflops');"
        "INSERT INTO host_runs VALUES (1, 1, 0, 1, 'passed', NULL, NULL, 1.0, NULL, 1700000005,"
        " NULL);"
        "INSERT INTO series VALUES (1, 1, 1, -1); INSERT INTO metrics VALUES (1, 1700000000, 1,"
        " 42.0, 0);"
        "PRAGMA user_version = 1;"
    )
    db.close()

    with History.open(tmp_path) as history:
        [series] = history.series("gpu1", None, None)
        assert series.points[0][1] == 42.0 and series.gpu_index is None
        assert history.runs()[0].run_id == "old"
        record_run(history, "new", T0, [host_doc("gpu1", 700)])
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("SELECT count(*) FROM host_runs WHERE versions IS NOT NULL").fetchone() == (
        1,
    )


def test_a_history_from_a_newer_dcctl_is_refused(tmp_path: Path) -> None:
    History.open(tmp_path).close()
    db = sqlite3.connect(tmp_path / "history.sqlite")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(HistoryError) as caught:
        History.open(tmp_path)
    message = str(caught.value)
    assert "history.sqlite" in message and "newer dcctl" in message and "\n" not in message


@pytest.mark.parametrize(
    "content",
    [b"this is not a database at all, just text" * 200, b"SQLite format 3\x00" + b"\xff" * 4000],
)
def test_an_unreadable_history_names_the_file_and_the_fix(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "history.sqlite").write_bytes(content)
    with pytest.raises(HistoryError) as caught:
        History.open(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "history.sqlite") in message
    assert "move it away" in message and "\n" not in message


def test_a_foreign_sqlite_file_is_not_taken_over(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "history.sqlite")
    db.execute("CREATE TABLE mine (x)")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="not a dcctl history"):
        History.open(tmp_path)
