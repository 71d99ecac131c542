"""PCIe checks: link width, link generation, replay counter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, field, same


def _pair(current: str, maximum: str) -> Callable[[dict[str, Any]], tuple[int, int] | None]:
    def read(gpu: dict[str, Any]) -> tuple[int, int] | None:
        pcie = gpu.get("pcie") or {}
        now, top = pcie.get(current), pcie.get(maximum)
        return None if now is None or top is None else (now, top)

    return read


def pcie_width(gpus: list[dict[str, Any]]) -> GpuCheck:
    def passed(pairs: list[tuple[int, int]]) -> str:
        width = same([now for now, _ in pairs])
        return f"at PCIe x{width}" if width is not None else "at their maximum PCIe link width"

    return GpuCheck(
        "maximum link width",
        read=_pair("width", "width_max"),
        judge=lambda pair: (
            None
            if pair[0] >= pair[1]
            else Finding("fail", f"PCIe link trained at x{pair[0]} of x{pair[1]}")
        ),
        passed=passed,
        unreported="PCIe link width not reported",
    )


def pcie_gen(gpus: list[dict[str, Any]]) -> GpuCheck:
    def passed(pairs: list[tuple[int, int]]) -> str:
        gen = same([now for now, _ in pairs])
        return f"at PCIe Gen{gen}" if gen is not None else "at their maximum PCIe generation"

    # A warning only: GPUs drop the link speed at idle and raise it under load.
    return GpuCheck(
        "maximum link generation",
        read=_pair("gen", "gen_max"),
        judge=lambda pair: (
            None
            if pair[0] >= pair[1]
            else Finding("warn", f"PCIe link at Gen{pair[0]} of Gen{pair[1]} (normal at idle)")
        ),
        passed=passed,
        unreported="PCIe link generation not reported",
    )


def pcie_replays(gpus: list[dict[str, Any]], limit: int) -> GpuCheck:
    return GpuCheck(
        limit,
        read=field("pcie", "replays"),
        judge=lambda n: (
            None
            if n <= limit
            else Finding("warn", f"{n} PCIe replays (over {limit}): a marginal link or riser")
        ),
        passed=lambda counts: f"with at most {max(counts)} PCIe replays (limit {limit})",
        unreported="PCIe replay counter not reported",
    )
