"""Hosts against their fleet: figure outliers and version drift among hosts of one GPU model."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sysroots import FIXTURES, HEALTHY

from dcctl.evaluate.fleet_compare import fleet_outliers, model_of, version_drift
from dcctl.node.facts import Probe, collect_facts
from dcctl.node.probes import gpu
from dcctl.node.sysroot import SYSROOT_ENV
from dcctl.results.metrics import MetricPoint

H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
BUSBW = "bench.allreduce.busbw_gbs"
TFLOPS = "bench.gemm.bf16.tflops"
P99 = "certify.step_p99_s"


# --- model_of ---------------------------------------------------------------------------------


def test_model_of_a_recorded_h100_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(HEALTHY))
    probe = Probe("gpu", ("driver", "cuda", "gpus", "gpu_source"), lambda p: gpu.collect_gpu())
    assert model_of(collect_facts({}, (probe,))) == H100


@pytest.mark.parametrize(
    ("facts", "model"),
    [
        ({"gpus": []}, "CPU"),
        ({"gpus": None}, None),  # the GPU probe failed
        ({}, None),
        (None, None),  # the host was never reached
        ({"gpus": [{"index": 0}]}, None),
        ({"gpus": ["junk"]}, None),
    ],
)
def test_model_of(facts: Any, model: str | None) -> None:
    assert model_of(facts) == model


# --- outliers ---------------------------------------------------------------------------------


def points(name: str, *values: float, status: str = "pass") -> list[MetricPoint]:
    """One value per GPU when several are given, one node-wide figure otherwise."""
    if len(values) == 1:
        return [MetricPoint(name, None, values[0], status)]
    return [MetricPoint(name, i, value, status) for i, value in enumerate(values)]


def fleet(values: dict[str, float], name: str = BUSBW) -> dict[str, list[MetricPoint]]:
    return {host: points(name, value) for host, value in values.items()}


def test_the_slow_host_of_eight_warns_naming_median_value_and_group() -> None:
    busbw = {f"gpu{n:03d}": 398.0 + n % 3 for n in range(1, 8)} | {"gpu008": 310.0}
    found = fleet_outliers(fleet(busbw), dict.fromkeys(busbw, H100), {})
    assert list(found) == ["gpu008"]
    [result] = found["gpu008"]
    assert (result.id, result.status, result.kind) == (f"fleet.outlier.{BUSBW}", "warn", "bench")
    assert result.message.startswith(
        f"{BUSBW} 310.0 is 22.3% below the median 399.0 of 8 hosts with {H100} "
    )
    assert result.observed == 310.0
    assert result.expected is not None
    assert result.expected["median"] == 399.0 and result.expected["hosts"] == 8
    assert result.metrics == {
        "value": 310.0,
        "median": 399.0,
        "change": pytest.approx(-0.2231, abs=1e-4),
    }


def test_a_faster_host_is_no_finding_and_small_spread_is_none() -> None:
    busbw = {"a": 400.0, "b": 402.0, "c": 396.0, "d": 500.0, "e": 375.0}  # e: 6% below
    assert fleet_outliers(fleet(busbw), dict.fromkeys(busbw, H100), {}) == {}


def test_latency_outliers_are_the_slow_ones() -> None:
    p99 = {"a": 0.100, "b": 0.101, "c": 0.099, "d": 0.150, "e": 0.05}
    found = fleet_outliers(fleet(p99, P99), dict.fromkeys(p99, H100), {})
    assert list(found) == ["d"]
    assert "50.0% above the median 0.1 of 5 hosts" in found["d"][0].message


def test_wide_spread_fleet_needs_three_mads() -> None:
    # Spread so wide that 3 MADs exceed 10% of the median: only the far one is out.
    tflops = {"a": 600.0, "b": 700.0, "c": 800.0, "d": 900.0, "e": 1000.0, "f": 250.0}
    found = fleet_outliers(fleet(tflops, TFLOPS), dict.fromkeys(tflops, H100), {})
    assert list(found) == ["f"]  # median 750, MAD 150: 450 allowed below


def test_hosts_compare_by_their_median_across_gpus() -> None:
    by_host = {
        "a": points(TFLOPS, 780.0, 781.0, 779.0, 500.0),  # one slow GPU: the host's median holds
        "b": points(TFLOPS, 780.0, 782.0, 781.0, 780.0),
        "c": points(TFLOPS, 779.0, 780.0, 781.0, 782.0),
        "d": points(TFLOPS, 600.0, 610.0, 605.0, 600.0),
    }
    found = fleet_outliers(by_host, dict.fromkeys(by_host, H100), {})
    assert list(found) == ["d"]
    assert found["d"][0].gpu is None


def test_groups_are_per_gpu_model_and_need_three_hosts() -> None:
    busbw = {"h1": 400.0, "h2": 401.0, "h3": 399.0, "a1": 200.0, "a2": 100.0, "x": 1.0}
    models = {"h1": H100, "h2": H100, "h3": H100, "a1": A100, "a2": A100, "x": None}
    assert fleet_outliers(fleet(busbw), models, {}) == {}


def test_only_judged_passing_figures_count() -> None:
    by_host = {
        "a": points(BUSBW, 400.0),
        "b": points(BUSBW, 401.0),
        "c": points(BUSBW, 399.0),
        "d": points(BUSBW, 10.0, status="fail"),  # already a finding of its own
        "e": points("bench.allreduce.ranks", 1.0),  # not a measurement
    }
    assert fleet_outliers(by_host, dict.fromkeys(by_host, H100), {}) == {}


def test_per_host_spread_and_a_malformed_one() -> None:
    busbw = {"a": 400.0, "b": 401.0, "c": 399.0, "d": 380.0}
    expect = {"d": {"outlier_min_spread": 0.01}, "a": {"outlier_min_spread": "wide"}}
    found = fleet_outliers(fleet(busbw), dict.fromkeys(busbw, H100), expect)
    assert [r.id for r in found["d"]] == [f"fleet.outlier.{BUSBW}"]
    assert [(r.id, r.status) for r in found["a"]] == [("fleet.outlier", "error")]


# --- drift ------------------------------------------------------------------------------------


def host(
    driver: str = "550.90.07",
    vbios: tuple[str, ...] = ("96.00.89.00.01",) * 8,
    kernel: str = "5.15.0-91-generic",
    firmware: dict[str, str] | None = None,
    ofed: str | None = "23.10-0.5.5",
    nccl: str | None = "2.19.3",
) -> dict[str, Any]:
    gpus = [{"index": i, "name": H100, "vbios": v} for i, v in enumerate(vbios)]
    hca = firmware if firmware is not None else {f"mlx5_{i}": "28.41.1000" for i in range(8)}
    return {
        "driver": driver,
        "kernel": kernel,
        "gpus": gpus,
        "versions": {"ofed": ofed, "nccl": nccl, "hca_firmware": hca},
    }


def drift(facts: dict[str, Any]) -> dict[str, list[tuple[str, str, Any, Any]]]:
    found = version_drift(facts, {name: model_of(f) for name, f in facts.items()})
    return {
        name: [(r.id, r.status, r.observed, r.expected) for r in results]
        for name, results in found.items()
    }


def test_one_host_on_another_driver_of_eight() -> None:
    facts = {f"gpu{n:03d}": host() for n in range(1, 9)}
    facts["gpu004"] = host(driver="550.54.15")
    found = version_drift(facts, {name: H100 for name in facts})
    assert list(found) == ["gpu004"]
    [result] = found["gpu004"]
    assert (result.id, result.status) == ("drift.driver", "warn")
    assert result.message == f"driver 550.54.15 differs from 550.90.07 on 7 of 8 hosts ({H100})"
    assert (result.observed, result.expected) == ("550.54.15", "550.90.07")


def test_uniform_fleet_has_no_drift_whatever_its_versions() -> None:
    assert drift({f"n{i}": host(driver="535.1.1") for i in range(4)}) == {}


def test_real_h100_firmware_set_is_one_value_per_host() -> None:
    """A real H100 node (tests/fixtures/real/versions/gpud-h100) runs its ConnectX-7s and its
    BlueField-3 on different firmware: that set is the host's value, not drift within it."""
    tree = FIXTURES / "real" / "versions" / "gpud-h100" / "sys" / "class" / "infiniband"
    firmware = {d.name: (d / "fw_ver").read_text().strip() for d in sorted(tree.iterdir())}
    older = {**firmware, "mlx5_3": "28.39.1002"}
    facts = {"a": host(firmware=firmware), "b": host(firmware=firmware), "c": host(firmware=older)}
    found = drift(facts)
    assert list(found) == ["c"]
    [(result_id, status, observed, expected)] = found["c"]
    assert (result_id, status) == ("drift.hca_firmware", "warn")
    assert observed == "28.39.1002, 28.41.1000, 32.38.3056"
    assert expected == "28.41.1000, 32.38.3056"


def test_vbios_kernel_ofed_nccl() -> None:
    odd_vbios = ("96.00.89.00.01",) * 7 + ("96.00.74.00.0B",)
    facts = {
        "a": host(),
        "b": host(),
        "c": host(vbios=odd_vbios, kernel="5.15.0-101-generic", ofed="24.04-0.6.6", nccl="2.21.5"),
    }
    assert [r[0] for r in drift(facts)["c"]] == [
        "drift.vbios",
        "drift.kernel",
        "drift.ofed",
        "drift.nccl",
    ]


def test_a_tie_warns_every_host_with_the_split() -> None:
    facts = {"a": host(), "b": host(), "c": host(nccl="2.21.5"), "d": host(nccl="2.21.5")}
    found = version_drift(facts, dict.fromkeys(facts, H100))
    assert sorted(found) == ["a", "b", "c", "d"]
    message = found["a"][0].message
    assert message == (
        f"NCCL 2.19.3: hosts with {H100} disagree with no majority (2.19.3 on 2; 2.21.5 on 2 "
        "of 4 hosts)"
    )
    assert found["c"][0].expected == ["2.19.3", "2.21.5"]


def test_unknown_values_are_not_compared() -> None:
    facts = {
        "a": host(ofed=None, nccl=None, firmware={}),
        "b": host(ofed="23.10-0.5.5", nccl=None, firmware={}),
        "c": {"driver": None, "kernel": 5, "gpus": [{"name": H100, "vbios": 7}], "versions": []},
    }
    assert drift(facts) == {}  # one OFED known is no fleet; junk values are unknown


def test_groups_by_gpu_model() -> None:
    facts = {"h1": host(), "h2": host(), "a1": host(driver="535.1.1") | {"gpus": [{"name": A100}]}}
    assert drift(facts) == {}
    assert version_drift({"x": host(), "y": host(driver="1")}, {"x": None, "y": None}) == {}


def test_facts_from_json_round_trip() -> None:
    facts = json.loads(json.dumps({"a": host(), "b": host(), "c": host(kernel="6.8.0")}))
    assert drift(facts)["c"][0][:2] == ("drift.kernel", "warn")
