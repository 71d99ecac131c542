"""GPU health: judge each GPU's NVML readings against `expect` (HEALTH_DEFAULTS under it).

Every check gives one `pass` for the node when all GPUs are fine, or one result per offending
GPU, which names the GPU (index, PCI bus id, serial). A reading a GPU does not report (None:
not supported there) skips that check for that GPU; a check no GPU reports is one `skip`, or
no result at all where the hardware has no such thing (see GpuCheck.unreported in check.py).
"""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.gpu_health import identity, memory, nvlink, pcie, thermal
from dcctl.evaluate.gpu_health.check import BadExpectation, Builder, run_check
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS

NVML_SKIP_MESSAGE = "NVML not available; GPU health checks skipped"

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


def evaluate_gpu_health(facts: dict[str, Any], expect: dict[str, Any]) -> list[Result]:
    """GPU health results in CHECK_IDS order; [] on a node without GPUs.

    Facts from the procfs fallback (no NVML readings) give one `gpu.health` skip.
    """
    gpus = facts.get("gpus")
    if gpus is None:
        error = (facts.get("probe_errors") or {}).get("gpu", "GPU list unknown")
        return [Result("gpu.health", "error", f"gpu probe failed: {error}")]
    if not gpus:
        return []
    if facts.get("gpu_source") != "nvml":
        reason = (facts.get("probe_errors") or {}).get("nvml")
        message = (
            NVML_SKIP_MESSAGE
            if reason is None
            else f"NVML not available ({reason}); GPU health checks skipped"
        )
        return [Result("gpu.health", "skip", message, reason)]
    # Idempotent when the caller merged them already; lets this stand alone.
    settings = {**HEALTH_DEFAULTS, **expect}
    results: list[Result] = []
    for check_id, build in _CHECKS:
        try:
            check = build(gpus, settings)
        except BadExpectation as exc:
            results.append(Result(check_id, "error", str(exc)))
            continue
        if check is not None:
            results.extend(run_check(check, gpus))
    return results
