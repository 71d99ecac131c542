"""The figures a group of nodes is judged by: medians, percentiles, a robust outlier rule, the
strictest threshold among the group's hosts, and what a node of a gang reported. Pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from dcctl.evaluate.bounds import shown
from dcctl.evaluate.gang_input import NodeRun
from dcctl.inventory.expect_keys import expectations
from dcctl.inventory.model import Host

# Iglewicz and Hoaglin's modified z-score: 0.6745 * (x - median) / MAD, where 0.6745 makes MAD
# comparable to a standard deviation for normal data; a score above 3.5 is their outlier rule.
MAD_SCALE = 0.6745
MAX_ROBUST_Z = 3.5
# Identical ranks have a MAD near 0, where a few microseconds of noise would score huge; with
# MAD at least this fraction of the median, a rank must sit ~13 % above the median to score 3.5.
MAD_FLOOR_FRACTION = 0.025


def median(values: Sequence[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count); ValueError if empty."""
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q!r}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mad(values: Sequence[float]) -> float:
    """Median absolute deviation from the median."""
    center = median(values)
    return median([abs(value - center) for value in values])


def robust_z(value: float, center: float, spread: float) -> float:
    """Modified z-score of `value` given the median and a (floored) MAD; 0 when both are 0."""
    if spread <= 0:
        return 0.0 if value == center else math.copysign(math.inf, value - center)
    return MAD_SCALE * (value - center) / spread


def floored_mad(values: Sequence[float], floor_fraction: float = MAD_FLOOR_FRACTION) -> float:
    """MAD, but at least `floor_fraction` of the median's magnitude."""
    return max(mad(values), floor_fraction * abs(median(values)))


def high_outliers(
    values: Sequence[float],
    max_z: float = MAX_ROBUST_Z,
    floor_fraction: float = MAD_FLOOR_FRACTION,
) -> list[int]:
    """Indices of values whose modified z-score (MAD floored) is above `max_z`: high side only,
    since a fast rank holds no one up."""
    if not values:
        return []
    center = median(values)
    spread = floored_mad(values, floor_fraction)
    return [i for i, value in enumerate(values) if robust_z(value, center, spread) > max_z]


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def finite(value: object) -> float | None:
    """A real number as float; None for bools, NaN, inf and anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# --- thresholds --------------------------------------------------------------------------------


def strictest(hosts: Iterable[Host], key: str, bound: Literal["min", "max"]) -> float | None:
    """The strictest value of an `expect` key among `hosts`: the highest of a floor ("min"),
    the lowest of a ceiling ("max"); a host that leaves the key unset counts with its default.
    None when no host has a value. A malformed value raises BadExpectation, as it does for the
    node-scope evaluators (the inventory validator refuses one first)."""
    found = [
        float(value)
        for host in hosts
        if (value := expectations(host.expect or {}).get(key)) is not None
    ]
    if not found:
        return None
    return max(found) if bound == "min" else min(found)


# --- what a node reported --------------------------------------------------------------------


def launch_error(node: NodeRun) -> Any:
    """The node's own launch error, or None, also when the controller already made it the
    node's error."""
    payload = node.payload or {}
    if node.error is not None and node.error.message == str(payload.get("launch_error")):
        return None
    return payload.get("launch_error")


def node_problems(node: NodeRun) -> list[str]:
    """What went wrong on the node itself: its error (kind: message) and its launch error."""
    parts = []
    if node.error is not None:
        parts.append(f"{node.error.kind}: {shown(node.error.message)}")
    launch = launch_error(node)
    if launch:
        parts.append(shown(launch))
    return parts
