"""Identity and software checks: VBIOS, persistence mode, MIG mode, compute processes."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, field, mode_check, on_off_reading


def vbios(gpus: list[dict[str, Any]], wanted: bool) -> GpuCheck | None:
    if not wanted:
        return None
    counts = Counter(gpu["vbios"] for gpu in gpus if gpu.get("vbios") is not None)
    # The version most GPUs run is the reference; on a tie, the newest string.
    reference = max(counts.items(), key=lambda item: (item[1], item[0]))[0] if counts else None
    return GpuCheck(
        "identical VBIOS on every GPU",
        read=field("vbios"),
        judge=lambda v: (
            None
            if v == reference
            else Finding("fail", f"VBIOS {shown(v)}, the node's other GPUs run {shown(reference)}")
        ),
        passed=lambda values: f"on VBIOS {shown(reference)}",
        unreported="VBIOS version not reported",
    )


persistence = mode_check("persistence mode", on_off_reading("persistence_mode"))

mig = mode_check("MIG", field("mig_mode"))


def _describe_process(proc: dict[str, Any]) -> str:
    memory = proc.get("used_memory_mib")
    used = f", {memory} MiB" if memory is not None else ""
    return f"pid {shown(proc.get('pid'))} {shown(proc.get('name') or '?')}{used}"


def processes(gpus: list[dict[str, Any]], allowed: int) -> GpuCheck:
    def judge(procs: list[dict[str, Any]]) -> Finding | None:
        if len(procs) <= allowed:
            return None
        named = listed(map(_describe_process, procs), len(procs), "; ")
        return Finding("fail", f"{len(procs)} compute processes (at most {allowed}): {named}")

    return GpuCheck(
        allowed,
        read=field("processes"),
        judge=judge,
        passed=lambda counts: (
            "with no compute processes"
            if allowed == 0
            else f"with at most {allowed} compute processes"
        ),
        unreported="compute processes not reported",
    )
