"""Two runs compared: a repair (gpu002's PCIe link and allreduce fixed, gpu004 back), figures
judged by which way they are better with a 1 % dead band, and findings matched by step only
where both runs ran that step."""

from __future__ import annotations

import json
from typing import Any

import pytest
from run_documents import UNREACHABLE, acceptance_run, host, markdown_tables

from dcctl.report.run_compare import (
    FindingChange,
    StatusChange,
    compare_runs,
    comparison_json,
    comparison_markdown,
    verdict_of,
)


@pytest.fixture
def before(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return acceptance_run(tmp_path_factory)


@pytest.fixture
def after(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same rack after the repair: gpu002 reseated, gpu004 back, gpu001 a little slower."""
    document = acceptance_run(tmp_path_factory)
    document["run_id"] = "20261130T090000Z-run-acceptance-9b1c"
    fixed = host(document, "gpu002")
    fixed["status"] = "passed"
    for result in fixed["results"]:
        if result["id"] in ("gpu.pcie.width", "bench.allreduce"):
            result["status"] = "pass"
        if result["id"] == "bench.allreduce":
            result["metrics"]["busbw_gbs"] = 381.0
    slower = host(document, "gpu001")
    for result in slower["results"]:
        if result["id"] == "bench.gemm.bf16":
            result["metrics"]["tflops"] *= 0.95  # 5 % slower: worse
        if result["id"] == "bench.fio.seqread":
            result["metrics"]["mb_s"] *= 1.005  # within the dead band: same
    back = host(document, UNREACHABLE)
    back.update(status="passed", error=None, results=[dict(slower["results"][0])])
    return document


def test_a_repair(before: dict[str, Any], after: dict[str, Any]) -> None:
    comparison = compare_runs(before, after)
    assert comparison.status_changes == (
        StatusChange("gpu002", "failed", "passed"),
        StatusChange(UNREACHABLE, "error", "passed"),
    )
    gone = {(f.host, f.step, f.check, f.gpu, f.before, f.after) for f in comparison.disappeared}
    assert gone == {
        ("gpu002", "preflight", "gpu.pcie.width", 2, "fail", "pass"),
        ("gpu002", "perf", "bench.allreduce", None, "fail", "pass"),
        (UNREACHABLE, None, "host", None, "error", None),
    }
    assert comparison.appeared == comparison.changed == ()
    figures = {(m.host, m.metric, m.gpu): m for m in comparison.metrics}
    busbw = figures[("gpu002", "bench.allreduce.busbw_gbs", None)]
    assert (busbw.before, busbw.after, busbw.better, busbw.verdict) == (250.0, 381.0, "higher",
                                                                        "better")  # fmt: skip
    assert busbw.change == pytest.approx(0.524, abs=1e-3)
    assert busbw.step == "perf"
    gemm = figures[("gpu001", "bench.gemm.bf16.tflops", None)]
    assert gemm.verdict == "worse" and gemm.change == pytest.approx(-0.05)
    assert figures[("gpu001", "bench.fio.seqread.mb_s", None)].verdict == "same"
    assert figures[("gpu001", "bench.allreduce.bytes", None)].verdict is None  # set-up, not judged
    certify = figures[("cluster [gpu001, gpu002]", "certify.samples_per_s", None)]
    assert certify.verdict == "same"


def test_hosts_in_one_run_only(before: dict[str, Any], after: dict[str, Any]) -> None:
    after["hosts"] = [h for h in after["hosts"] if h["name"] != "gpu003"]
    host(after, "gpu001")["name"] = "gpu009"
    comparison = compare_runs(before, after)
    assert comparison.only_before == ("gpu001", "gpu003")
    assert comparison.only_after == ("gpu009",)
    assert "gpu001" not in {m.host for m in comparison.metrics}


def test_findings_that_appear_and_change(before: dict[str, Any], after: dict[str, Any]) -> None:
    # before -> after: gpu003's warning becomes a failure; gpu001 gets a new one.
    worse = host(after, "gpu003")
    next(r for r in worse["results"] if r["id"] == "kernel.mlx5_pcie")["status"] = "fail"
    fresh = host(after, "gpu001")["results"][1]
    fresh.update(status="error", message="kernel unreadable")
    comparison = compare_runs(before, after)
    assert comparison.changed == (
        FindingChange("gpu003", "preflight", "kernel.mlx5_pcie", None, "warn", "fail",
                      next(r["message"] for r in worse["results"]
                           if r["id"] == "kernel.mlx5_pcie")),
    )  # fmt: skip
    (appeared,) = comparison.appeared
    assert (appeared.host, appeared.check, appeared.before, appeared.after) == (
        "gpu001", fresh["id"], "pass", "error")  # fmt: skip
    assert appeared.message == "kernel unreadable"


def test_a_check_run_against_a_playbook_matches_by_check(before: dict[str, Any]) -> None:
    """Step names differ (check vs preflight): findings match by id and GPU, not by step."""
    check = {**before, "command": "check", "playbook": None,
             "steps": [{**before["steps"][0], "name": "check"}]}  # fmt: skip
    check["hosts"] = [
        {**h, "results": [{**r, "step": "check"} for r in h["results"] if r["step"] == "preflight"]}
        for h in before["hosts"]
    ]
    comparison = compare_runs(check, before)
    assert comparison.disappeared == comparison.changed == ()
    # Only what the playbook's bench step added is new.
    assert [(f.host, f.step, f.check, f.before, f.after) for f in comparison.appeared] == [
        ("gpu002", None, "bench.allreduce", None, "fail")
    ]
    assert comparison.status_changes == ()


@pytest.mark.parametrize(
    ("name", "before", "after", "verdict"),
    [
        ("bench.gemm.bf16.tflops", 100.0, 101.0, "same"),  # 1 %: inside the dead band
        ("bench.gemm.bf16.tflops", 100.0, 101.5, "better"),
        ("bench.gemm.bf16.tflops", 100.0, 98.0, "worse"),
        ("bench.fio.randread.p99_us", 100.0, 120.0, "worse"),  # lower is better
        ("bench.fio.randread.p99_us", 100.0, 80.0, "better"),
        ("bench.allreduce.busbw_gbs", 0.0, 10.0, "better"),  # from nothing
        ("bench.allreduce.busbw_gbs", 0.0, 0.0, "same"),
        ("bench.allreduce.ranks", 8.0, 16.0, None),  # not judged
    ],
)
def test_verdicts(name: str, before: float, after: float, verdict: str | None) -> None:
    from dcctl.evaluate.baselines import better

    assert verdict_of(better(name), before, after) == verdict


def test_json_and_markdown(before: dict[str, Any], after: dict[str, Any]) -> None:
    comparison = compare_runs(before, after)
    data = comparison_json(comparison)
    assert list(data) == ["schema", "before", "after", "hosts", "summary", "status_changes",
                          "metrics", "findings"]  # fmt: skip
    assert data["schema"] == "dcctl.comparison/1"
    assert data["before"]["run_id"] == before["run_id"]
    assert data["summary"]["worse"] == 1 and data["summary"]["disappeared"] == 3
    assert json.loads(json.dumps(data)) == data
    metric = data["metrics"][0]
    assert list(metric) == ["host", "metric", "gpu", "step", "before", "after", "change",
                            "better", "verdict"]  # fmt: skip
    text = comparison_markdown(comparison)
    assert text.startswith(f"# dcctl comparison: {after['run_id']} against {before['run_id']}")
    tables = markdown_tables(text)
    metrics = tables["Metrics in both runs, worst first"]
    assert metrics[1] == ["gpu001", "perf: bench.gemm.bf16.tflops", "-", "781.0", "742.0",
                          "-5.0 %", "worse"]  # fmt: skip
    assert tables["Host status changes"][1:] == [["gpu002", "failed", "passed"],
                                                 [UNREACHABLE, "error", "passed"]]  # fmt: skip
    assert len(tables["Findings that disappeared"]) == 4
