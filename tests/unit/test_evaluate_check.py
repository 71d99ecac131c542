"""Judging facts against `expect`: statuses, observed/expected values and messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from dcctl.evaluate.check import evaluate_facts, summarize_facts
from dcctl.evaluate.result import Result
from dcctl.node.facts import collect_facts

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

H100_EXPECT: dict[str, Any] = {
    "os": "Ubuntu 22.04*",
    "kernel": ">=5.15",
    "driver": ">=550.54",
    "cuda": ">=12.4",
    "gpu_count": 8,
    "gpu_model": "*H100*",
    "min_memory_gb": 1900,
    "swap": "off",
    "mounts": ["/data", "/raid"],
    "ib_ports": 8,
    "ib_rate": 400,
}


def sysroot_facts(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, Any]:
    """The facts the node runtime reports for a recorded tree."""
    monkeypatch.setenv("DCCTL_SYSROOT", str(FIXTURES / "sysroots" / name))
    return collect_facts({"scratch_dir": "/var/tmp/dcctl"})


@pytest.fixture
def h100(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # The tree's NVML recording (dcctl-recorded/nvml.json) gives the GPUs and CUDA version.
    return sysroot_facts(monkeypatch, "healthy-h100")


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return sysroot_facts(monkeypatch, "no-gpu")


@pytest.fixture
def degraded(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    return sysroot_facts(monkeypatch, "ib-degraded")


def judge(facts: dict[str, Any], expect: dict[str, Any], result_id: str) -> Result:
    """The one result with this id (a no-driver node also gets a gpu.present skip)."""
    return by_id(evaluate_facts(facts, expect))[result_id]


def by_id(results: list[Result]) -> dict[str, Result]:
    ids = [r.id for r in results]
    assert len(ids) == len(set(ids)), ids
    return {r.id: r for r in results}


# --- the healthy node ----------------------------------------------------------------------


def test_healthy_node_passes_everything(h100: dict[str, Any]) -> None:
    results = evaluate_facts(h100, H100_EXPECT)
    assert [r.id for r in results] == [
        "os.release",
        "kernel.version",
        "driver.version",
        "cuda.version",
        "gpu.count",
        "gpu.model",
        "memory.total",
        "swap.state",
        "mounts.present:/data",
        "mounts.present:/raid",
        "ib.ports",
        "ib.rate",
    ]
    assert {r.status for r in results} == {"pass"}, [r.message for r in results]


def test_healthy_node_messages_and_values(h100: dict[str, Any]) -> None:
    results = by_id(evaluate_facts(h100, H100_EXPECT))
    kernel = results["kernel.version"]
    assert kernel.message == "kernel 5.15.0-101-generic (expected >=5.15)"
    assert (kernel.observed, kernel.expected) == ("5.15.0-101-generic", ">=5.15")
    assert results["driver.version"].message == "driver 550.54.15 (expected >=550.54)"
    assert results["cuda.version"].observed == "12.4"
    assert results["gpu.count"].observed == 8
    assert results["gpu.model"].message == "8x NVIDIA H100 80GB HBM3 (expected *H100*)"
    assert results["memory.total"].observed == 2015.5
    assert results["swap.state"].message == "swap off (expected off)"
    assert (
        results["mounts.present:/data"].message == "/data mounted (nfs4 from 10.0.0.5:/export/data)"
    )
    # The Ethernet-mode ConnectX (mlx5_8, 100 Gb/s) is not an InfiniBand port.
    assert results["ib.ports"].observed == 8
    assert results["ib.rate"].observed == 400


def test_results_serialize(h100: dict[str, Any]) -> None:
    for result in evaluate_facts(h100, H100_EXPECT):
        json.dumps(result.to_json())


# --- versions ------------------------------------------------------------------------------


def test_old_kernel_fails(h100: dict[str, Any]) -> None:
    result = by_id(evaluate_facts(h100, {"kernel": ">=6.1"}))["kernel.version"]
    assert result.status == "fail"
    assert result.message == "kernel 5.15.0-101-generic (expected >=6.1)"


def test_kernel_compares_numerically_on_its_prefix(no_gpu: dict[str, Any]) -> None:
    assert judge(no_gpu, {"kernel": ">=5.15"}, "kernel.version").status == "pass"
    assert judge(no_gpu, {"kernel": "<6.1.1"}, "kernel.version").status == "pass"
    assert judge(no_gpu, {"kernel": ">6.1"}, "kernel.version").status == "fail"


def test_driver_pin(h100: dict[str, Any]) -> None:
    assert evaluate_facts(h100, {"driver": "550.54.15"})[0].status == "pass"
    pinned = evaluate_facts(h100, {"driver": "==535.161.08"})[0]
    assert pinned.status == "fail"
    assert pinned.message == "driver 550.54.15 (expected ==535.161.08)"


def test_cuda_too_old(h100: dict[str, Any]) -> None:
    result = evaluate_facts(h100, {"cuda": ">=12.6"})[0]
    assert (result.id, result.status, result.observed) == ("cuda.version", "fail", "12.4")


def test_invalid_requirement_is_an_error_result(h100: dict[str, Any]) -> None:
    result = evaluate_facts(h100, {"kernel": "=>5.15"})[0]
    assert result.status == "error"
    assert "invalid version requirement '=>5.15'" in result.message


def test_cuda_unknown_with_driver_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    # A driver tree without an NVML recording: procfs source, no CUDA version.
    facts = sysroot_facts(monkeypatch, "ib-degraded")
    result = evaluate_facts(facts, {"cuda": ">=12.4"})[0]
    assert result.status == "fail"
    assert result.message == "CUDA driver version unknown (expected >=12.4)"


# --- no driver -----------------------------------------------------------------------------


def test_no_driver_fails_gpu_demands(no_gpu: dict[str, Any]) -> None:
    expect = {"driver": ">=550", "cuda": ">=12.4", "gpu_count": 8, "gpu_model": "*H100*"}
    results = by_id(evaluate_facts(no_gpu, expect))
    assert set(results) == {"driver.version", "cuda.version", "gpu.count", "gpu.model"}
    assert all(r.status == "fail" and r.observed is None for r in results.values())
    driver = results["driver.version"]
    assert driver.message == "NVIDIA driver not loaded (expected >=550)"
    assert driver.expected == ">=550"
    assert results["gpu.count"].message == "NVIDIA driver not loaded (expected 8 GPUs)"
    assert results["cuda.version"].message == "NVIDIA driver not loaded (expected CUDA >=12.4)"


def test_no_driver_and_nothing_demanded_is_a_skip(no_gpu: dict[str, Any]) -> None:
    results = evaluate_facts(no_gpu, {"os": "Debian*", "kernel": ">=6"})
    assert [(r.id, r.status) for r in results] == [
        ("os.release", "pass"),
        ("kernel.version", "pass"),
        ("gpu.present", "skip"),
    ]
    assert results[2].message == "no NVIDIA driver loaded; GPU checks skipped"


def test_skip_even_with_empty_expect(no_gpu: dict[str, Any]) -> None:
    assert [(r.id, r.status) for r in evaluate_facts(no_gpu, {})] == [("gpu.present", "skip")]


def test_no_skip_when_driver_present(h100: dict[str, Any]) -> None:
    assert evaluate_facts(h100, {}) == []


def test_gpu_count_zero_is_not_a_demand(no_gpu: dict[str, Any]) -> None:
    results = by_id(evaluate_facts(no_gpu, {"gpu_count": 0}))
    assert results["gpu.count"].status == "pass"
    assert results["gpu.present"].status == "skip"


# --- gpus ----------------------------------------------------------------------------------


def test_missing_gpu_fails_count(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    del facts["gpus"][3]
    result = evaluate_facts(facts, {"gpu_count": 8})[0]
    assert (result.status, result.observed, result.message) == ("fail", 7, "7 GPUs (expected 8)")


def test_wrong_gpu_model_is_named(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts["gpus"][5]["name"] = "NVIDIA A100-SXM4-80GB"
    result = evaluate_facts(facts, {"gpu_model": "*H100*"})[0]
    assert result.status == "fail"
    assert result.message == "GPU 5 is NVIDIA A100-SXM4-80GB (expected *H100*)"
    assert result.observed == ["NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3"]


def test_gpu_model_glob_is_case_insensitive(h100: dict[str, Any]) -> None:
    assert evaluate_facts(h100, {"gpu_model": "*h100*"})[0].status == "pass"
    assert evaluate_facts(h100, {"gpu_model": "*H200*"})[0].status == "fail"


def test_bad_gpu_count_type_is_an_error(h100: dict[str, Any]) -> None:
    result = evaluate_facts(h100, {"gpu_count": "eight"})[0]
    assert result.status == "error"
    # The inventory's own wording for the same value.
    assert result.message == (
        "invalid expectation gpu_count: expected a whole number >= 0, got 'eight'"
    )


# --- os, memory, swap, mounts --------------------------------------------------------------


def test_os_glob(no_gpu: dict[str, Any]) -> None:
    result = judge(no_gpu, {"os": "Ubuntu 22.04*"}, "os.release")
    assert result.status == "fail"
    assert result.message == "OS Debian GNU/Linux 12 (bookworm) (expected Ubuntu 22.04*)"


def test_memory_minimum(no_gpu: dict[str, Any]) -> None:
    assert judge(no_gpu, {"min_memory_gb": 120}, "memory.total").status == "pass"
    result = judge(no_gpu, {"min_memory_gb": 256}, "memory.total")
    assert result.status == "fail"
    assert result.message == "memory 125.7 GiB (expected at least 256 GiB)"


def test_swap_on_when_off_expected(no_gpu: dict[str, Any]) -> None:
    result = judge(no_gpu, {"swap": "off"}, "swap.state")
    assert (result.id, result.status, result.observed) == ("swap.state", "fail", "on")
    assert result.message == "swap on: 8 GiB, 2.1 GiB used (expected off)"
    assert judge(no_gpu, {"swap": "on"}, "swap.state").status == "pass"


def test_swap_yaml_boolean(h100: dict[str, Any], no_gpu: dict[str, Any]) -> None:
    # PyYAML reads `swap: off` as False.
    assert evaluate_facts(h100, {"swap": False})[0].status == "pass"
    assert judge(no_gpu, {"swap": False}, "swap.state").status == "fail"
    assert evaluate_facts(h100, {"swap": "maybe"})[0].status == "error"


def test_mounts_one_result_per_path(no_gpu: dict[str, Any]) -> None:
    results = by_id(evaluate_facts(no_gpu, {"mounts": ["/srv/", "/data", "/"]}))
    assert results["mounts.present:/srv/"].status == "pass"
    assert results["mounts.present:/"].status == "pass"
    missing = results["mounts.present:/data"]
    assert (missing.status, missing.message, missing.expected) == (
        "fail",
        "/data not mounted",
        "/data",
    )


def test_mount_with_escaped_space(h100: dict[str, Any]) -> None:
    result = evaluate_facts(h100, {"mounts": ["/mnt/local scratch"]})[0]
    assert result.status == "pass"


def test_partial_recording_cannot_judge_mounts(degraded: dict[str, Any]) -> None:
    result = evaluate_facts(degraded, {"mounts": ["/data"]})[0]
    assert result.status == "error"
    assert "/proc/mounts" in result.message


# --- infiniband ----------------------------------------------------------------------------


def test_ib_down_port_fails_ports_and_rate(degraded: dict[str, Any]) -> None:
    results = by_id(evaluate_facts(degraded, {"ib_ports": 8, "ib_rate": 400}))
    ports = results["ib.ports"]
    assert ports.status == "fail"
    assert ports.observed == 7
    assert ports.message == (
        "7 of 8 InfiniBand ports ACTIVE (expected 8); not active: mlx5_3/1 DOWN (Polling)"
    )
    rate = results["ib.rate"]
    assert rate.status == "fail"
    assert rate.observed == 10
    assert "mlx5_3/1 at 10 Gb/s (DOWN)" in rate.message
    assert "mlx5_5/1 at 200 Gb/s" in rate.message
    assert "mlx5_0" not in rate.message


def test_ib_rate_per_port_threshold(degraded: dict[str, Any]) -> None:
    facts = copy.deepcopy(degraded)
    facts["ib"] = [p for p in facts["ib"] if p["device"] != "mlx5_3"]
    assert evaluate_facts(facts, {"ib_rate": 200})[0].status == "pass"
    result = evaluate_facts(facts, {"ib_rate": 400})[0]
    assert result.status == "fail"
    assert result.message == "mlx5_5/1 at 200 Gb/s (expected 400 Gb/s on every port)"


def test_ib_none_present(no_gpu: dict[str, Any]) -> None:
    results = by_id(evaluate_facts(no_gpu, {"ib_ports": 4, "ib_rate": 200}))
    assert results["ib.ports"].status == "fail"
    assert results["ib.ports"].message == "0 of 0 InfiniBand ports ACTIVE (expected 4)"
    assert results["ib.rate"].message == "no InfiniBand ports found (expected 200 Gb/s)"


# --- probe errors --------------------------------------------------------------------------


def test_errored_probe_makes_its_checks_errors(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts.update(driver=None, cuda=None, gpus=None, gpu_source=None)
    facts["probe_errors"] = {"gpu": "OSError: [Errno 5] Input/output error"}
    results = by_id(evaluate_facts(facts, {"driver": ">=550", "gpu_count": 8, "kernel": ">=5"}))
    assert results["driver.version"].status == "error"
    assert results["driver.version"].message == (
        "gpu probe failed: OSError: [Errno 5] Input/output error"
    )
    assert results["gpu.count"].status == "error"
    assert results["kernel.version"].status == "pass"
    assert "gpu.present" not in results


def test_errored_ib_probe(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts["ib"] = None
    facts["probe_errors"] = {"ib": "PermissionError: denied"}
    result = evaluate_facts(facts, {"ib_rate": 400})[0]
    assert (result.id, result.status) == ("ib.rate", "error")


def test_nvml_error_with_fallback_still_judges(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts.update(cuda=None, gpu_source="procfs")
    facts["probe_errors"] = {"nvml": "NVMLError_Unknown: Unknown Error"}
    results = by_id(evaluate_facts(facts, {"gpu_count": 8, "cuda": ">=12.4"}))
    assert results["gpu.count"].status == "pass"
    assert results["cuda.version"].status == "error"
    assert "nvml probe failed" in results["cuda.version"].message


def test_lost_gpu_is_counted_but_not_misnamed(h100: dict[str, Any]) -> None:
    # NVML could not read GPU 3: gpu.health names it; count and model judge what is known.
    facts = copy.deepcopy(h100)
    facts["gpus"][3] = {"index": 3, "pci_bus_id": "00000000:5D:00.0", "error": "lost"}
    results = by_id(evaluate_facts(facts, {"gpu_count": 8, "gpu_model": "*H100*"}))
    assert results["gpu.count"].status == "pass"
    assert results["gpu.model"].status == "pass"
    assert results["gpu.model"].message == "7x NVIDIA H100 80GB HBM3 (expected *H100*)"
    facts["gpus"] = [{"index": 0, "pci_bus_id": None, "error": "lost"}]
    model = judge(facts, {"gpu_model": "*H100*"}, "gpu.model")
    assert (model.status, model.message) == (
        "fail",
        "GPU model unknown: no GPU could be read (expected *H100*)",
    )
    assert summarize_facts(facts)["gpus"] == "1x unreadable GPU"


def test_shared_helpers_live_in_one_module() -> None:
    from dcctl.evaluate import check, common, dcgm, io_health, node_health
    from dcctl.evaluate.gpu_health import check as gpu_check
    from dcctl.inventory import expect_keys

    assert common.BadExpectation is expect_keys.BadExpectation
    for name in ("_BadExpectation", "_integer", "_number", "_ib_ports", "_port_name",
                 "_normalize_mountpoint", "_probe_error", "_probe_failed", "expect_count",
                 "expect_integer", "expect_number", "expect_on_off", "_mode"):  # fmt: skip
        for module in (check, io_health, node_health, gpu_check, dcgm):
            assert getattr(module, name, None) in (None, getattr(common, name, None)), name
    facts = {"probe_errors": {"ib": "PermissionError: denied", "nvme": "OSError: x"}}
    assert common.probe_error(facts, "ib", "mounts", "nvme") == (
        "ib probe failed: PermissionError: denied; nvme probe failed: OSError: x"
    )
    assert common.probe_error(facts, "mounts") is None
    ports = [{"link_layer": "Ethernet"}, {"link_layer": "InfiniBand"}, {"device": "mlx5_0"}]
    assert len(common.ib_ports({"ib": ports})) == 2
    assert common.port_name({"device": "mlx5_0", "port": 1}) == "mlx5_0/1"
    assert [common.normalize_mountpoint(p) for p in ("/raid/", "/", "//")] == ["/raid", "/", "/"]
    assert common.expect_number("ib_rate", 400) == 400.0
    with pytest.raises(common.BadExpectation, match="expected a number, got True"):
        common.expect_number("fio_min_seqread_mb_s", True)


def test_unknown_expectation_is_an_error_result(h100: dict[str, Any]) -> None:
    result = evaluate_facts(h100, {"gpu_modle": "*H100*"})[0]
    assert (result.id, result.status) == ("expect.gpu_modle", "error")
    assert result.message == "unknown expectation 'gpu_modle'; did you mean 'gpu_model'?"


# --- summary -------------------------------------------------------------------------------


def test_summarize_h100(h100: dict[str, Any]) -> None:
    assert summarize_facts(h100) == {
        "os": "Ubuntu 22.04.4 LTS",
        "kernel": "5.15.0-101-generic",
        "driver": "550.54.15",
        "cuda": "12.4",
        "gpus": "8x NVIDIA H100 80GB HBM3",
    }


def test_summarize_no_gpu(no_gpu: dict[str, Any]) -> None:
    assert summarize_facts(no_gpu) == {
        "os": "Debian GNU/Linux 12 (bookworm)",
        "kernel": "6.1.0-18-amd64",
        "driver": "none",
        "cuda": "none",
        "gpus": "none",
    }


def test_summarize_mixed_and_failed() -> None:
    mixed = {
        "gpus": [{"name": "NVIDIA L40S"}, {"name": "NVIDIA H100 PCIe"}, {"name": "NVIDIA L40S"}],
        "driver": "550.54.15",
        "gpu_source": "procfs",
    }
    summary = summarize_facts(mixed)
    assert summary["gpus"] == "1x NVIDIA H100 PCIe, 2x NVIDIA L40S"
    assert summary["cuda"] == "unknown"
    assert summary["os"] == "unknown"
    failed = {"gpus": None, "driver": None, "probe_errors": {"gpu": "boom"}}
    assert summarize_facts(failed)["gpus"] == "unknown"
    assert summarize_facts(failed)["driver"] == "unknown"
