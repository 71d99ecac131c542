"""GPU health: judge each GPU's NVML readings against `expect` (HEALTH_DEFAULTS under it).

Every check gives one `pass` for the node when all GPUs are fine, or one result per offending
GPU, which names the GPU (index, PCI bus id, serial). A reading a GPU does not report (None:
not supported there) skips that check for that GPU; a check no GPU reports is one `skip`, or
no result at all where the hardware has no such thing (see GpuCheck.unreported in check.py).
"""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import shown
from dcctl.evaluate.common import BadExpectation
from dcctl.evaluate.gpu_health import identity, memory, nvlink, pcie, thermal
from dcctl.evaluate.gpu_health.check import Builder, run_check
from dcctl.evaluate.gpus import gpu_label, gpu_ref
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS

NVML_SKIP_MESSAGE = "pynvml not available on the node; GPU health checks skipped"

# Results come out in this order.
_CHECKS: tuple[tuple[str, Builder], ...] = (
    ("gpu.vbios", identity.vbios),
    ("gpu.persistence", identity.persistence),
    ("gpu.mig", identity.mig),
    ("gpu.processes", identity.processes),
    ("gpu.ecc.mode", memory.ecc_mode),
    ("gpu.ecc.uncorrected", memory.ecc_uncorrected),
    ("gpu.ecc.correctable", memory.ecc_correctable),
    ("gpu.row_remap", memory.row_remap),
    ("gpu.retired_pages", memory.retired_pages),
    ("gpu.pcie.width", pcie.pcie_width),
    ("gpu.pcie.gen", pcie.pcie_gen),
    ("gpu.pcie.replays", pcie.pcie_replays),
    ("gpu.clocks", thermal.clocks),
    ("gpu.temperature", thermal.temperature),
    ("gpu.power", thermal.power),
    ("gpu.nvlink.state", nvlink.nvlink_state),
    ("gpu.nvlink.errors", nvlink.nvlink_errors),
    ("gpu.fabric", nvlink.fabric),
)

CHECK_IDS = tuple(check_id for check_id, _ in _CHECKS)


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


def evaluate_gpu_health(facts: dict[str, Any], expect: dict[str, Any]) -> list[Result]:
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
    # Idempotent when the caller merged them already; lets this stand alone.
    settings = {**HEALTH_DEFAULTS, **expect}
    for check_id, build in _CHECKS:
        try:
            check = build(readable, settings)
        except BadExpectation as exc:
            results.append(Result(check_id, "error", str(exc)))
            continue
        if check is not None:
            results.extend(run_check(check, readable))
    return results
