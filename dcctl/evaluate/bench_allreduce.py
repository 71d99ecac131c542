"""Judges the node-scope allreduce sweep (the section dcctl.node.bench.allreduce summarizes).

One `bench.allreduce` result per node. Its figures are busbw and algbw at the largest size
measured (nccl-tests' definitions, GB = 10^9 bytes), in `metrics` and, as what was judged,
in `observed`. Verdict, worst first:
- fail: any wrong element at any size (nccl-tests' #wrong); the message names the sizes;
- error: a rank failed or wrote nothing, so there is no figure to judge;
- fail: busbw below the threshold;
- pass: otherwise, and with no threshold the figure is reported without a judgement.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.result import Result, Status

RESULT_ID = "bench.allreduce"


class BusbwFloor(NamedTuple):
    """The busbw a healthy node of this shape reaches at >= 8 GiB, less a margin."""

    model: str  # a word of the GPU's NVML name: "H100" matches "NVIDIA H100 80GB HBM3"
    gpu_count: int
    nvswitch: bool
    min_busbw_gbs: float
    source: str


# Floors sit ~10-15 % under what healthy nodes measure, so run-to-run spread passes and a
# down link (which costs far more) does not. Sources:
# - nccl-tests on 8x H100/H200 with NVLink SHARP: ~470-480 GB/s at >= 8 GiB, ~365 with NVLS off
#   (/work/shared/MEASUREMENTS.md); NVIDIA's figure for H100 NVLS is 480 GB/s (GTC S62129, as
#   quoted in github.com/NVIDIA/nccl/issues/1374).
# - Azure's node health checks (github.com/Azure/azurehpc-health-checks, conf/*.conf,
#   check_nccl_allreduce): ND H100 v5 460 GB/s and ND H200 v5 431 GB/s at 16 GiB, ND A100 v4
#   228 GB/s at 8 GiB, ND40rs v2 (8x V100 SXM2, NVLink without NVSwitch) 110 GB/s at 8 GiB.
DEFAULT_FLOORS: tuple[BusbwFloor, ...] = (
    BusbwFloor("H100", 8, True, 400.0, "NVLS ~470-480 GB/s; Azure ND H100 v5 passes at 460"),
    BusbwFloor("H200", 8, True, 400.0, "NVLS ~470-480 GB/s; Azure ND H200 v5 passes at 431"),
    BusbwFloor("A100", 8, True, 200.0, "~228 GB/s at 8 GiB; Azure ND A100 v4 passes at 228"),
    BusbwFloor("V100-SXM2", 8, False, 100.0, "Azure ND40rs v2 passes at 110"),
)
# On 8x H100/H200 this is what NCCL reaches without NVLink SHARP: a node near it has NVLS off.
NVLS_OFF_BUSBW_GBS = 365.0


def _matches(model: str, gpu_name: str) -> bool:
    # Whole words only: "H200" must not match "GH200", a different machine.
    return re.search(rf"(?<![A-Z0-9]){re.escape(model)}(?![A-Z0-9])", gpu_name.upper()) is not None


def default_floor(gpu_name: str, gpu_count: int, nvswitch: bool) -> BusbwFloor | None:
    """The table row for this node's shape, or None for a shape with no published figure."""
    return next(
        (
            floor
            for floor in DEFAULT_FLOORS
            if _matches(floor.model, gpu_name)
            and floor.gpu_count == gpu_count
            and floor.nvswitch == nvswitch
        ),
        None,
    )


def default_min_busbw(gpu_name: str, gpu_count: int, nvswitch: bool) -> float | None:
    """The default busbw threshold in GB/s for this node's shape; None when unknown."""
    floor = default_floor(gpu_name, gpu_count, nvswitch)
    return floor.min_busbw_gbs if floor else None


# --- the verdict ---------------------------------------------------------------------------


def size_text(nbytes: Any) -> str:
    """1024 -> "1 KiB", 8589934592 -> "8 GiB"; other values as they came."""
    if type(nbytes) is not int or nbytes < 0:
        return shown(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or nbytes % 1024:
            return f"{nbytes} {unit}"
        nbytes //= 1024
    return f"{nbytes} TiB"


METRIC_KEYS = ("busbw_gbs", "algbw_gbs", "bytes", "ranks", "backend")


def _metrics(section: Mapping[str, Any]) -> dict[str, Any]:
    return {key: section.get(key) for key in METRIC_KEYS}


def _expected(threshold: float | None) -> dict[str, Any]:
    return {"wrong": 0} if threshold is None else {"wrong": 0, "min_busbw_gbs": threshold}


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def _wrong_message(section: Mapping[str, Any]) -> str:
    sizes = [size_text(size) for size in section.get("wrong_sizes") or []]
    ranks = [str(rank) for rank in section.get("wrong_ranks") or []]
    message = (
        f"allreduce returned {section.get('wrong_total')} wrong elements at "
        f"{listed(sizes, len(sizes))}"
    )
    return f"{message} (seen on ranks {listed(ranks, len(ranks))})" if ranks else message


def _errors_message(errors: list[Any]) -> str:
    described = [
        f"rank {shown(entry.get('rank'))}: {shown(entry.get('error'))}"
        if isinstance(entry, Mapping)
        else shown(entry)
        for entry in errors
    ]
    return f"allreduce benchmark failed: {listed(described, len(described), '; ')}"


def _figure_message(section: Mapping[str, Any], busbw: float) -> str:
    return (
        f"busbw {busbw:.1f} GB/s at {size_text(section.get('bytes'))} over "
        f"{shown(section.get('ranks'))} ranks ({shown(section.get('backend'))})"
    )


def _judged(section: Mapping[str, Any], threshold: float | None) -> tuple[Status, str]:
    """Status and message once the sweep is known to be whole and correct."""
    busbw = _number(section.get("busbw_gbs"))
    if busbw is None:
        return "error", f"allreduce measured no bus bandwidth ({shown(section.get('busbw_gbs'))})"
    figure = _figure_message(section, busbw)
    if threshold is None:
        return "pass", f"{figure}; no threshold for this node, figure with no judgement"
    if busbw >= threshold:
        return "pass", f"{figure}, at least {threshold:g} GB/s"
    hint = ""
    if abs(busbw - NVLS_OFF_BUSBW_GBS) <= 0.1 * NVLS_OFF_BUSBW_GBS:
        hint = "; 8x H100/H200 reach about this with NVLink SHARP off"
    return "fail", f"{figure}, below {threshold:g} GB/s{hint}"


def _verdict(section: Mapping[str, Any], threshold: float | None) -> tuple[Status, str]:
    if section.get("wrong_total"):
        return "fail", _wrong_message(section)
    errors = section.get("errors") or []
    if errors:
        return "error", _errors_message(list(errors))
    if not section.get("sizes"):
        return "error", "allreduce measured no sizes"
    return _judged(section, threshold)


def evaluate_allreduce(section: Any, min_busbw_gbs: float | None) -> list[Result]:
    """The node's `bench.allreduce` result; min_busbw_gbs None reports without judging speed."""
    expected = _expected(min_busbw_gbs)
    if not isinstance(section, Mapping):
        message = f"no allreduce results in the payload ({type(section).__name__})"
        return [Result(RESULT_ID, "error", message, None, expected, kind="bench")]
    status, message = _verdict(section, min_busbw_gbs)
    figures = _metrics(section)
    return [Result(RESULT_ID, status, message, figures, expected, "bench", metrics=figures)]
