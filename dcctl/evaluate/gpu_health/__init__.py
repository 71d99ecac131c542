"""GPU health: judge each GPU's NVML readings against `expect` (its defaults where unset).

Every check gives one `pass` for the node when all GPUs are fine, or one result per offending
GPU, which names the GPU (index, PCI bus id, serial). A reading a GPU does not report (None:
not supported there) skips that check for that GPU; a check no GPU reports is one `skip`, or
no result at all where the hardware has no such thing (see GpuCheck.unreported in check.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.evaluate.bounds import shown
from dcctl.evaluate.gpu_health import identity, memory, nvlink, pcie, thermal
from dcctl.evaluate.gpu_health.check import Builder, run_check
from dcctl.evaluate.gpus import gpu_label, gpu_ref
from dcctl.evaluate.registry import Check, check
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import BadExpectation, Expectations, expectations

NVML_SKIP_MESSAGE = "pynvml not available on the node; GPU health checks skipped"

# Results come out in this order.
CHECKS: tuple[Check[Builder], ...] = (
    check("gpu.vbios", identity.vbios, "vbios_uniform"),
    check("gpu.persistence", identity.persistence, "persistence_mode"),
    check("gpu.mig", identity.mig, "mig_mode"),
    check("gpu.processes", identity.processes, "max_gpu_processes"),
    check("gpu.ecc.mode", memory.ecc_mode, "ecc"),
    check("gpu.ecc.uncorrected", memory.ecc_uncorrected),
    check("gpu.ecc.correctable", memory.ecc_correctable, "max_ecc_correctable"),
    check("gpu.row_remap", memory.row_remap),
    check("gpu.retired_pages", memory.retired_pages),
    check("gpu.pcie.width", pcie.pcie_width),
    check("gpu.pcie.gen", pcie.pcie_gen),
    check("gpu.pcie.replays", pcie.pcie_replays, "max_pcie_replays"),
    check("gpu.clocks", thermal.clocks),
    check("gpu.temperature", thermal.temperature, "max_gpu_temp_c", judges_unset=True),
    check("gpu.power", thermal.power, "max_power_fraction"),
    check("gpu.nvlink.state", nvlink.nvlink_state, "nvlink_links", judges_unset=True),
    check(
        "gpu.nvlink.errors",
        nvlink.nvlink_errors,
        "max_nvlink_replay",
        "max_nvlink_recovery",
        "max_nvlink_crc",
    ),
    check("gpu.fabric", nvlink.fabric, "fabric_manager"),
)

CHECK_IDS = tuple(row.id for row in CHECKS)


def _nvml_result(facts: dict[str, Any]) -> Result | None:
    """Why NVML gave no readings, as the node's one `gpu.health` result; None when it did."""
    if facts.get("gpu_source") == "nvml":
        return None
    failure = facts.get("nvml_error") or {}
    kind, raw = failure.get("kind"), failure.get("message")
    reason = None if raw is None else shown(raw)
    if kind == "failed":
        # nvmlInit or a system query failed with the driver loaded (a driver/library version
        # mismatch, a missing libnvidia-ml): everything built on NVML or CUDA fails too.
        message = f"NVML failed: {reason}; nvidia-smi and CUDA will fail the same way"
        return Result("gpu.health", "fail", message, reason, "NVML answers")
    if kind == "timeout":
        return Result("gpu.health", "fail", str(reason), reason, "NVML answers")
    if kind == "error":
        return Result("gpu.health", "error", f"NVML read failed: {reason}", reason)
    message = NVML_SKIP_MESSAGE if reason is None else f"{reason}; GPU health checks skipped"
    return Result("gpu.health", "skip", message, reason)


def _unreadable_gpu(gpu: dict[str, Any]) -> Result:
    message = f"{gpu_label(gpu)}: NVML cannot read this GPU: {shown(gpu['error'])}"
    expected = "readable by NVML"
    return Result("gpu.health", "fail", message, gpu["error"], expected, gpu=gpu_ref(gpu))


def evaluate_gpu_health(
    facts: dict[str, Any], expect: Mapping[str, Any] | Expectations
) -> list[Result]:
    """GPU health results: a `gpu.health` fail per GPU NVML could not read, then CHECK_IDS in
    order over the others; [] on a node without GPUs.

    Without NVML readings (procfs fallback) there is one `gpu.health` result instead: a fail
    when NVML failed or did not answer with the driver loaded, a skip when pynvml is missing.
    """
    gpus = facts.get("gpus")
    if gpus is None:
        error = (facts.get("probe_errors") or {}).get("gpu", "GPU list unknown")
        return [Result("gpu.health", "error", f"gpu probe failed: {error}")]
    nvml = _nvml_result(facts)
    if nvml is not None:
        # A failing NVML is a finding even when procfs lists no GPU; a missing pynvml is not.
        return [nvml] if gpus or nvml.status != "skip" else []
    results = [_unreadable_gpu(gpu) for gpu in gpus if gpu.get("error")]
    readable = [gpu for gpu in gpus if not gpu.get("error")]
    if not readable:
        return results
    settings = expectations(expect)
    for row in CHECKS:
        try:
            values = row.values(settings)
        except BadExpectation as exc:
            results.append(row.error(exc))
            continue
        built = None if values is None else row.judge(readable, *values)
        if built is not None:
            results.extend(run_check(row.id, built, readable))
    return results
