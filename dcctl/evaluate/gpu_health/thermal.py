"""Clock, temperature and power checks."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import listed
from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, field, same

# Clock event reasons that mean the hardware itself pulled the clocks down.
HW_SLOWDOWNS = ("hw_slowdown", "hw_thermal", "hw_power_brake")
# Warn when this close to the GPU's own slowdown temperature (no max_gpu_temp_c set).
SLOWDOWN_MARGIN_C = 5


def _clock_finding(events: list[str]) -> Finding | None:
    hardware = [event for event in events if event in HW_SLOWDOWNS]
    if hardware:
        return Finding("fail", f"clocks held down by {listed(hardware, len(hardware))}")
    if "sw_thermal" in events:
        return Finding("warn", "clocks held down by sw_thermal")
    return None


def clocks(gpus: list[dict[str, Any]]) -> GpuCheck:
    return GpuCheck(
        f"none of {', '.join((*HW_SLOWDOWNS, 'sw_thermal'))}",
        read=field("clock_events"),
        judge=_clock_finding,
        passed=lambda events: "without thermal, slowdown or power-brake clock events",
        unreported="clock event reasons not reported",
    )


def temperature(gpus: list[dict[str, Any]], limit: float | None) -> GpuCheck:
    """Fails above `limit`; with none set, warns within SLOWDOWN_MARGIN_C of the slowdown."""

    def read(gpu: dict[str, Any]) -> tuple[int, int | None] | None:
        temp, slowdown = gpu.get("temperature_c"), gpu.get("temperature_slowdown_c")
        if temp is None or (limit is None and slowdown is None):
            return None
        return (temp, slowdown)

    def judge(reading: tuple[int, int | None]) -> Finding | None:
        temp, slowdown = reading
        if limit is not None:
            return None if temp <= limit else Finding("fail", f"{temp} C (limit {limit:g} C)")
        assert slowdown is not None  # read() guarantees it when no limit is set
        if temp >= slowdown - SLOWDOWN_MARGIN_C:
            return Finding(
                "warn", f"{temp} C, within {SLOWDOWN_MARGIN_C} C of its {slowdown} C slowdown"
            )
        return None

    def passed(readings: list[tuple[int, int | None]]) -> str:
        hottest = max(temp for temp, _ in readings)
        if limit is not None:
            return f"at or below {hottest} C (limit {limit:g} C)"
        slowdown = same([s for _, s in readings])
        where = f"{slowdown} C" if slowdown is not None else "their thresholds"
        return f"at or below {hottest} C (slowdown at {where})"

    return GpuCheck(
        limit if limit is not None else f"below slowdown - {SLOWDOWN_MARGIN_C} C",
        read=read,
        judge=judge,
        passed=passed,
        unreported="GPU temperature or its slowdown threshold not reported",
        observe=lambda reading: reading[0],
    )


def power(gpus: list[dict[str, Any]], fraction: float) -> GpuCheck:
    def read(gpu: dict[str, Any]) -> tuple[float, float] | None:
        draw, limit = gpu.get("power_w"), gpu.get("power_limit_w")
        return None if draw is None or not limit else (draw, limit)

    def judge(reading: tuple[float, float]) -> Finding | None:
        draw, limit = reading
        if draw <= fraction * limit:
            return None
        return Finding("warn", f"drawing {draw:g} W, over {fraction:.0%} of its {limit:g} W limit")

    def passed(readings: list[tuple[float, float]]) -> str:
        limit = same([cap for _, cap in readings])
        cap = f"a {limit:g} W limit" if limit is not None else "their limits"
        allowed = f" (warn over {fraction:.0%})" if fraction != 1 else ""
        return f"drawing at most {max(draw for draw, _ in readings):g} W of {cap}{allowed}"

    return GpuCheck(
        fraction,
        read=read,
        judge=judge,
        passed=passed,
        unreported="power draw or limit not reported",
        observe=lambda reading: reading[0],
    )
