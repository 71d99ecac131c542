"""`dcctl history` on a history filled through the real API, through Typer's real parsing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from dcctl.cli import history as history_cli
from dcctl.cli import main
from dcctl.results.history import History


def _app() -> typer.Typer:
    """The real global options callback with the history command, whether or not the
    installed `dcctl` has it registered yet."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
    app.callback()(main.main)
    app.command(name="history")(history_cli.history)
    return app


def _dcctl(state: Path, *args: str) -> Any:
    return CliRunner().invoke(_app(), ["--state-dir", str(state), *args], env={"COLUMNS": "200"})


def _doc(name: str, busbw: float) -> dict[str, Any]:
    return {
        "name": name,
        "status": "passed",
        "error": None,
        "duration_s": 1.0,
        "facts": {"gpus": []},
        "results": [
            {"id": "bench.allreduce", "kind": "bench", "status": "pass", "message": "ok",
             "metrics": {"busbw_gbs": busbw}},
            {"id": "bench.gemm.bf16", "kind": "bench", "status": "pass", "message": "ok",
             "gpu": {"index": 0}, "metrics": {"tflops": 700.0}},
        ],
    }  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """Ten daily audits of two hosts; node2's busbw sinks 2 % a day."""
    state = tmp_path / "state"
    now = datetime.now(timezone.utc)
    with History.open(state) as history:
        for day in range(10):
            run_id = f"2026-audit-{day:02}"
            started = now - timedelta(days=9 - day, minutes=5)
            run_dir = state / "runs" / run_id
            run_dir.mkdir(parents=True)
            history.begin_run(run_id, "audit", None, "inv.yaml", started, run_dir)
            history.record_host(run_id, 0, _doc("node1", 400.0), started)
            history.record_host(run_id, 0, _doc("node2", 400.0 * 0.98**day), started)
            history.finish_run(run_id, "passed", started + timedelta(minutes=1))
    return state


def test_the_table_shows_runs_and_a_trend_per_metric(state: Path) -> None:
    result = _dcctl(state, "history", "node2")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "2026-audit-09" in out and "bench.allreduce.busbw_gbs" in out
    assert "bench.gemm.bf16.tflops" in out
    busbw_row = next(line for line in out.splitlines() if "node2" in line and "%" in line)
    assert "-16.6%" in busbw_row  # 0.98 ** 9
    assert "█" in busbw_row and "▁" in busbw_row
    assert "node1" not in out


def test_json_is_the_stable_document(state: Path) -> None:
    result = _dcctl(state, "history", "--metric", "*busbw*", "--since", "3d", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["schema"] == "dcctl.history/1"
    assert [s["host"] for s in document["series"]] == ["node1", "node2"]
    node2 = document["series"][1]
    assert (node2["metric"], node2["gpu"], node2["n"]) == ("bench.allreduce.busbw_gbs", None, 3)
    assert node2["last"] == pytest.approx(400 * 0.98**9)
    assert len(node2["points"]) == 3 and node2["points"][0][0].endswith("Z")
    assert len(document["runs"]) == 3 and document["runs"][0]["hosts"] == 2


def test_the_global_json_option_works_too(state: Path) -> None:
    result = _dcctl(state, "--json", "history", "node1")
    assert json.loads(result.stdout)["host"] == "node1"


def test_no_history_is_one_line_and_success(tmp_path: Path) -> None:
    result = _dcctl(tmp_path / "empty", "history")
    assert result.exit_code == 0
    assert result.stdout.count("\n") == 1 and "no history" in result.stdout
    assert not (tmp_path / "empty").exists()


def test_an_unknown_host_is_one_line(state: Path) -> None:
    result = _dcctl(state, "history", "elsewhere")
    assert (result.exit_code, result.stdout.count("\n")) == (0, 1)


@pytest.mark.parametrize("since", ["3x", "-1d", "0h", "soon", "99999999w"])
def test_a_bad_since_is_exit_2_with_one_line(state: Path, since: str) -> None:
    result = _dcctl(state, "history", "--since", since)
    assert result.exit_code == 2
    assert "--since" in result.stderr and result.stderr.strip().count("\n") == 0


def test_a_newer_history_is_one_line_exit_2(state: Path) -> None:
    import sqlite3

    db = sqlite3.connect(state / "history.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()
    result = _dcctl(state, "history")
    assert result.exit_code == 2 and "newer dcctl" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_keep_days_prunes_runs_and_their_directories(state: Path) -> None:
    outside = state.parent / "not-a-run"
    outside.mkdir()
    result = _dcctl(state, "history", "--keep-days", "2.5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "removed 7 run(s)" in result.stderr
    assert sorted(p.name for p in (state / "runs").iterdir()) == [
        "2026-audit-07",
        "2026-audit-08",
        "2026-audit-09",
    ]
    assert outside.is_dir()
    runs = json.loads(_dcctl(state, "history", "--json").stdout)["runs"]
    assert [run["run_id"] for run in runs] == ["2026-audit-09", "2026-audit-08", "2026-audit-07"]
