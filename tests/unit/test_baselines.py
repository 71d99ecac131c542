"""Baselines: which way each real metric is better, and regressions against a host's own
passing history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sysroots import FIXTURES

from dcctl.evaluate import bench_allreduce
from dcctl.evaluate.baselines import better, regression_results
from dcctl.evaluate.bench_gemm import GemmLimits, evaluate_gemm
from dcctl.node.bench.gemm import summarize_gemm
from dcctl.results.metrics import MetricPoint, host_points

GEMM_FIXTURE = FIXTURES / "bench" / "gemm" / "h100x8"


# --- direction of every metric the evaluators write -------------------------------------------


def gemm_metric_names() -> set[str]:
    docs = [json.loads(p.read_text()) for p in sorted(GEMM_FIXTURE.glob("rank-*.json"))]
    results = evaluate_gemm(summarize_gemm(docs), GemmLimits())
    return {point.name for point in host_points({"results": [r.to_json() for r in results]})}


def test_gemm_figures_as_the_evaluator_writes_them() -> None:
    directions = {name: better(name) for name in gemm_metric_names()}
    assert directions["bench.gemm.bf16.tflops"] == "higher"
    assert directions["bench.gemm.bf16.efficiency"] == "higher"
    # The model's datasheet peak is a constant; ratios are judged by their own thresholds.
    assert directions["bench.gemm.bf16.peak_tflops"] is None
    assert directions["bench.gemm.bf16.slowest_vs_median"] is None
    assert directions["bench.gemm.soak.last_vs_first"] is None


def test_allreduce_figures() -> None:
    judged = {key: better(f"bench.allreduce.{key}") for key in bench_allreduce.METRIC_KEYS}
    assert judged == {
        "busbw_gbs": "higher",
        "algbw_gbs": "higher",
        "bytes": None,
        "ranks": None,
        "backend": None,
    }


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        # bench_fio: mb_s and iops per job (clat_us is a nested table, not a point).
        ("bench.fio.seqread.mb_s", "higher"),
        ("bench.fio.randread.iops", "higher"),
        ("bench.fio.randread.p99_us", "lower"),
        # certify (cluster result and per-rank results).
        ("certify.samples_per_s", "higher"),
        ("certify.samples_per_s_per_rank", "higher"),
        ("certify.mfu", "higher"),
        ("certify.step_p50_s", "lower"),
        ("certify.step_p99_s", "lower"),
        ("certify.rank.local_p50_s", "lower"),
        ("certify.loss_final", "lower"),
        ("certify.loss_initial", None),
        ("certify.nodes", None),
        # cluster allreduce, on each host of the group and per pair.
        ("allreduce.cluster.busbw_gbs", "higher"),
        ("cluster.allreduce.pair.algbw_gbs", "higher"),
        ("allreduce.cluster.nodes", None),
        # Units and words for figures to come.
        ("x.latency_ns", "lower"),
        ("x.open_ms", "lower"),
        ("x.time", "lower"),
        ("x.tokens_per_s", "higher"),
        # A baseline or outlier result's own figures are never judged again.
        ("baseline.bench.gemm.bf16.tflops.value", None),
        ("fleet.outlier.bench.fio.seqread.mb_s.change", None),
        ("x.unknown_figure", None),
    ],
)
def test_direction_by_key(name: str, direction: str | None) -> None:
    assert better(name) == direction


# --- regressions -------------------------------------------------------------------------------

TFLOPS = "bench.gemm.bf16.tflops"
BUSBW = "bench.allreduce.busbw_gbs"
P50 = "certify.step_p50_s"


def point(name: str, value: float, gpu: int | None = None, status: str = "pass") -> MetricPoint:
    return MetricPoint(name, gpu, value, status)


def test_a_drop_past_the_limit_warns_with_figure_baseline_change_and_runs() -> None:
    history = {(BUSBW, None): [400.0, 402.0, 398.0, 401.0, 399.0, 100.0]}
    results = regression_results([point(BUSBW, 352.0)], history, {})
    assert len(results) == 1
    result = results[0]
    assert (result.id, result.status, result.kind, result.gpu) == (
        f"baseline.{BUSBW}",
        "warn",
        "bench",
        None,
    )
    # The median of the last 5 (the sixth, oldest value is outside baseline_runs).
    assert result.metrics == {"value": 352.0, "baseline": 400.0, "change": pytest.approx(-0.12)}
    assert result.message == (
        "bench.allreduce.busbw_gbs 352.0 is 12.0% below its baseline 400.0 (median of the last "
        "5 passing runs; higher is better, 5.0% allowed)"
    )
    assert result.expected == {"baseline": 400.0, "max_drop": 0.05, "runs": 5}


def test_within_the_limit_is_one_quiet_pass() -> None:
    history = {(BUSBW, None): [400.0] * 5, (TFLOPS, 2): [780.0, 781.0, 779.0]}
    current = [point(BUSBW, 385.0), point(TFLOPS, 790.0, gpu=2)]
    [result] = regression_results(current, history, {})
    assert (result.id, result.status) == ("baseline", "pass")
    assert result.message == "2 figures within 5.0% of their baselines"


def test_per_gpu_regression_names_the_gpu_and_fails_when_asked() -> None:
    history = {(TFLOPS, 3): [780.0, 782.0, 781.0]}
    expect = {"regression_fail": True, "regression_max_drop": 0.02}
    [result] = regression_results([point(TFLOPS, 760.0, gpu=3)], history, expect)
    assert result.status == "fail"
    assert result.gpu == {"index": 3, "pci_bus_id": None, "serial": None}
    assert result.message.startswith("GPU 3: bench.gemm.bf16.tflops 760.0 is 2.7% below")


def test_latency_regresses_upward() -> None:
    history = {(P50, None): [0.100, 0.101, 0.099]}
    [result] = regression_results([point(P50, 0.120)], history, {})
    assert result.status == "warn"
    assert "20.0% above its baseline 0.1 " in result.message
    assert "lower is better" in result.message
    # Faster is never a regression.
    assert regression_results([point(P50, 0.05)], history, {})[0].status == "pass"


@pytest.mark.parametrize(
    ("history", "expect", "judged"),
    [
        ([400.0, 400.0], {}, False),  # fewer than 3 passing runs
        ([400.0, 400.0], {"baseline_runs": 2}, True),  # unless fewer are asked for
        ([400.0], {"baseline_runs": 1}, True),
        ([0.0, 0.0, 0.0], {}, False),  # no relative change from zero
    ],
)
def test_enough_history(history: list[float], expect: dict[str, Any], judged: bool) -> None:
    results = regression_results([point(BUSBW, 300.0)], {(BUSBW, None): history}, expect)
    assert bool(results) == judged


def test_only_passing_current_figures_of_judged_metrics_count() -> None:
    history = {(BUSBW, None): [400.0] * 5, ("bench.allreduce.bytes", None): [1e9] * 5}
    current = [
        point(BUSBW, 100.0, status="fail"),  # its own result already failed
        point(BUSBW, 100.0, status="error"),
        point("bench.allreduce.bytes", 1.0),  # not a measurement
        point(BUSBW, 100.0, gpu=0),  # a figure with no history of its own
    ]
    assert regression_results(current, history, {}) == []


def test_a_malformed_expectation_is_one_error() -> None:
    [result] = regression_results([point(BUSBW, 1.0)], {}, {"regression_max_drop": 2})
    assert (result.id, result.status) == ("baseline", "error")
    assert "regression_max_drop" in result.message
    assert result.expected == 2
