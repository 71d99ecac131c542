"""A step judged across time and across hosts, through the real history (SQLite): a host whose
busbw sinks 8 % below its own recorded runs is flagged with its baseline, and a host whose
driver differs from its peers' is reported even when `expect` pins no driver."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.playbook.compare import compare_step
from dcctl.playbook.host_merge import tag_results
from dcctl.playbook.model import PlaybookStep
from dcctl.playbook.recorder import RunRecorder, RunSaved
from dcctl.playbook.session import new_run_meta
from dcctl.results.history import History
from dcctl.results.store import new_run_id

HOSTS = [f"gpu{i:03}" for i in range(1, 5)]
GPUS = [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "vbios": "96.00.89.00.01"}]
BENCH = PlaybookStep(name="bench-allreduce", kind="bench")
CHECK = PlaybookStep(name="check", kind="check")


def bench_document(name: str, busbw: float) -> dict[str, Any]:
    result = {"id": "bench.allreduce", "kind": "bench", "status": "pass", "message": "ok",
              "metrics": {"busbw_gbs": busbw, "algbw_gbs": busbw / 1.5, "ranks": 8}}  # fmt: skip
    return {"name": name, "address": name, "status": "passed", "error": None,
            "duration_s": 1.0, "facts": {"gpus": GPUS}, "results": [result]}  # fmt: skip


def check_document(name: str, driver: str) -> dict[str, Any]:
    facts = {"driver": driver, "kernel": "5.15.0-105-generic", "gpus": GPUS}
    return {"name": name, "address": name, "status": "passed", "error": None,
            "duration_s": 1.0, "facts": facts, "results": []}  # fmt: skip


def run(
    state: Path, step: PlaybookStep, documents: list[dict[str, Any]], expect: dict[str, Any]
) -> RunSaved:
    """One run of one step through the recorder and the history, judged across hosts."""
    with History.open(state) as history:
        recorder = RunRecorder(new_run_meta("audit", "inv.yaml"), state, history)
        index = recorder.begin_step(step)
        for document in documents:
            recorder.host_landed(index, document)
        hosts = [Host(name=d["name"], address=d["name"], expect=expect) for d in documents]
        compare_step(recorder, index, hosts, history)
        recorder.finish_step(index, interrupted=False)
        return recorder.finish(interrupted=False)


def record_a_month(state: Path) -> None:
    for day in range(6):
        figures = [100.0 + day % 3, 101.0, 99.5, 100.5]
        run(state, BENCH, [bench_document(h, f) for h, f in zip(HOSTS, figures, strict=True)], {})


def results_of(saved: RunSaved, host: str, prefix: str) -> list[dict[str, Any]]:
    (document,) = [h for h in saved.document["hosts"] if h["name"] == host]
    return [r for r in document["results"] if r["id"].startswith(prefix)]


def test_a_busbw_8_percent_below_its_baseline_is_a_warning_naming_the_baseline(
    tmp_path: Path,
) -> None:
    record_a_month(tmp_path)
    figures = [100.0, 101.0, 99.5, 100.5 * 0.92]
    saved = run(
        tmp_path, BENCH, [bench_document(h, f) for h, f in zip(HOSTS, figures, strict=True)], {}
    )

    regressions = {r["id"]: r for r in results_of(saved, "gpu004", "baseline.")}
    # algbw is busbw scaled: it sinks with it.
    assert set(regressions) == {"baseline.bench.allreduce.busbw_gbs",
                                "baseline.bench.allreduce.algbw_gbs"}  # fmt: skip
    regression = regressions["baseline.bench.allreduce.busbw_gbs"]
    assert regression["status"] == "warn"
    assert regression["step"] == "bench-allreduce"
    assert "100.5" in regression["message"]  # the baseline, in the message
    for host in HOSTS[:3]:
        assert all(r["status"] == "pass" for r in results_of(saved, host, "baseline"))
    assert saved.document["status"] == "passed"  # a warning, unless configured to fail
    with History.open(tmp_path) as history:
        found = {(f.host, f.result_id) for f in history.findings(saved.document["run_id"])}
    assert found == {("gpu004", name) for name in regressions}


def test_regression_fail_turns_the_drop_into_a_failed_host(tmp_path: Path) -> None:
    record_a_month(tmp_path)
    figures = [100.0, 101.0, 99.5, 100.5 * 0.92]
    documents = [bench_document(h, f) for h, f in zip(HOSTS, figures, strict=True)]
    saved = run(tmp_path, BENCH, documents, {"regression_fail": True})

    statuses = {h["name"]: h["status"] for h in saved.document["hosts"]}
    assert statuses == {"gpu001": "passed", "gpu002": "passed", "gpu003": "passed",
                        "gpu004": "failed"}  # fmt: skip
    assert saved.document["status"] == "failed"
    with History.open(tmp_path) as history:
        (latest, *_) = history.runs(host="gpu004")
    assert latest.status == "failed"


def test_a_host_far_below_its_fleet_is_an_outlier_on_its_first_run(tmp_path: Path) -> None:
    figures = [100.0, 101.0, 99.5, 80.0]
    saved = run(
        tmp_path, BENCH, [bench_document(h, f) for h, f in zip(HOSTS, figures, strict=True)], {}
    )

    (outlier,) = results_of(saved, "gpu004", "fleet.outlier.bench.allreduce.busbw_gbs")
    assert outlier["status"] == "warn"
    assert not any(results_of(saved, host, "fleet.outlier") for host in HOSTS[:3])


def test_a_driver_unlike_its_peers_is_drift_with_nothing_pinned(tmp_path: Path) -> None:
    drivers = ["550.90.07", "550.90.07", "550.54.15", "550.90.07"]
    saved = run(
        tmp_path, CHECK, [check_document(h, d) for h, d in zip(HOSTS, drivers, strict=True)], {}
    )

    (drift,) = results_of(saved, "gpu003", "drift.driver")
    assert drift["status"] == "warn"
    assert "550.90.07" in drift["message"]
    assert not any(results_of(saved, host, "drift") for host in ("gpu001", "gpu002", "gpu004"))
    host_file = saved.run_dir / "hosts" / "gpu003.json"
    assert "drift.driver" in host_file.read_text()  # the host's file holds the late findings


def certify_run(state: Path, samples_per_s: float) -> RunSaved:
    """A certify step: its verdict is a cluster result, its hosts' documents carry none."""
    verdict = {"id": "certify", "kind": "bench", "status": "pass", "message": "CERTIFIED",
               "metrics": {"samples_per_s": samples_per_s, "mfu": 0.41, "ranks": 16}}  # fmt: skip
    step = PlaybookStep(name="certify", kind="certify")
    with History.open(state) as history:
        recorder = RunRecorder(new_run_meta("certify", "inv.yaml"), state, history)
        index = recorder.begin_step(step)
        for name in HOSTS[:2]:
            recorder.host_landed(index, {**bench_document(name, 1.0), "results": []})
        recorder.cluster_results(index, [verdict])
        hosts = [Host(name=name, address=name) for name in HOSTS[:2]]
        compare_step(recorder, index, hosts, history)
        recorder.finish_step(index, interrupted=False)
        return recorder.finish(interrupted=False)


def test_certify_throughput_below_the_clusters_own_record_is_flagged(tmp_path: Path) -> None:
    for figure in (1000.0, 1010.0, 995.0, 1005.0):
        certify_run(tmp_path, figure)
    saved = certify_run(tmp_path, 900.0)

    flagged = [r for r in saved.document["cluster_results"] if r["status"] == "warn"]
    assert [r["id"] for r in flagged] == ["baseline.certify.samples_per_s"]
    assert flagged[0]["step"] == "certify"
    assert "1,002" in flagged[0]["message"] or "1002" in flagged[0]["message"]


def test_a_slow_decline_is_caught_against_the_runs_of_a_month_ago(tmp_path: Path) -> None:
    """1 % a week for eight weeks: never 5 % below the last five runs, but 6 % below the
    runs of four weeks and more ago."""
    now = datetime.now(timezone.utc)
    with History.open(tmp_path) as history:
        for weeks_ago in range(8, 0, -1):
            at = now - timedelta(weeks=weeks_ago)
            run_id = new_run_id("audit", at)
            history.begin_run(run_id, "audit", None, "inv.yaml", at, tmp_path / run_id)
            history.begin_step(run_id, 0, "bench-allreduce", "bench", at)
            document = bench_document("gpu001", 100.0 - (8 - weeks_ago))
            history.record_host(run_id, 0, tag_results(document, "bench-allreduce"), at)
            history.finish_step(run_id, 0, "passed", at)
            history.finish_run(run_id, "passed", at)
    saved = run(tmp_path, BENCH, [bench_document("gpu001", 92.0)], {})

    regressions = {r["id"]: r for r in results_of(saved, "gpu001", "baseline.")}
    busbw = regressions["baseline.bench.allreduce.busbw_gbs"]
    assert busbw["status"] == "warn"
    assert "98" in busbw["message"]  # the baseline of a month ago, not the recent 95

    quiet = run(tmp_path, BENCH, [bench_document("gpu001", 92.0)], {"baseline_long_days": 0})
    assert all(r["status"] == "pass" for r in results_of(quiet, "gpu001", "baseline."))
