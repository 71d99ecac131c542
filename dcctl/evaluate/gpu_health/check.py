"""A GPU health check judged GPU by GPU, how it runs, and the values it reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dcctl.evaluate.gpus import gpu_label, gpu_ref
from dcctl.evaluate.result import Result, Status


@dataclass(frozen=True)
class Finding:
    """What is wrong with one GPU: `message` follows the GPU's label."""

    status: Status
    message: str


@dataclass(frozen=True)
class GpuCheck:
    """One check judged GPU by GPU; its Result id is the one it is registered under.

    read: the GPU's reading, or None when it does not report it (skipped for that GPU).
    judge: a finding for a bad reading, None for a good one.
    passed: the pass message's tail, from every judged reading.
    unreported: the skip reason when no GPU reports it; None for hardware the check does not
        apply to (row remapping before Ampere, retired pages after, NVLink, NVSwitch fabric),
        which then gives no result at all.
    observe: a reading as a result's observed value.
    """

    expected: Any
    read: Callable[[dict[str, Any]], Any]
    judge: Callable[[Any], Finding | None]
    passed: Callable[[list[Any]], str]
    unreported: str | None
    observe: Callable[[Any], Any] = lambda reading: reading


# Builds a check from the node's GPUs and the typed values of the expect keys it is registered
# with, in that order; None: not judged.
Builder = Callable[..., GpuCheck | None]


def run_check(check_id: str, check: GpuCheck, gpus: list[dict[str, Any]]) -> list[Result]:
    readings: list[Any] = []
    findings: list[Result] = []
    for gpu in gpus:
        reading = check.read(gpu)
        if reading is None:
            continue
        readings.append(reading)
        finding = check.judge(reading)
        if finding is not None:
            message = f"{gpu_label(gpu)}: {finding.message}"
            observed = check.observe(reading)
            result = Result(check_id, finding.status, message, observed, check.expected)
            findings.append(replace(result, gpu=gpu_ref(gpu)))
    if findings:
        return findings
    if not readings:
        if check.unreported is None:
            return []
        return [Result(check_id, "skip", check.unreported, None, check.expected)]
    message = f"{len(readings)}/{len(readings)} GPUs {check.passed(readings)}"
    if len(readings) < len(gpus):
        message += f" ({len(gpus) - len(readings)} did not report it)"
    observed = [check.observe(reading) for reading in readings]
    return [Result(check_id, "pass", message, observed, check.expected)]


# --- readings ------------------------------------------------------------------------------


def field(*path: str) -> Callable[[dict[str, Any]], Any]:
    """A reader for gpu[path[0]][path[1]]...; None when any level is missing."""

    def read(gpu: dict[str, Any]) -> Any:
        value: Any = gpu
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return read


def on_off_reading(*path: str) -> Callable[[dict[str, Any]], str | None]:
    read = field(*path)

    def as_on_off(gpu: dict[str, Any]) -> str | None:
        value = read(gpu)
        return None if value is None else ("on" if value else "off")

    return as_on_off


def same(values: list[Any]) -> Any:
    """The one value every GPU shares, or None when they differ."""
    return values[0] if len(set(values)) == 1 else None


def mode_check(what: str, read: Callable[[dict[str, Any]], Any]) -> Builder:
    """A check that a GPU's on/off mode is the one expected ('any': not judged)."""

    def build(gpus: list[dict[str, Any]], wanted: str) -> GpuCheck | None:
        if wanted == "any":
            return None
        return GpuCheck(
            wanted,
            read=read,
            judge=lambda state: (
                None if state == wanted else Finding("fail", f"{what} {state} (expected {wanted})")
            ),
            passed=lambda states: f"{what} {wanted}",
            unreported=f"{what} not reported",
        )

    return build
