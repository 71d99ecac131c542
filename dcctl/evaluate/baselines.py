"""A host's figures against its own history: which way each metric is better, and the
regressions past `regression_max_drop` from the median of its last passing runs.

A threshold catches a node that was never good; a baseline catches one that got worse (a GPU
whose GEMM slid 8 % since last week still clears 70 % of peak). The history supplies the
baseline values (dcctl.results.history: newest first, from runs the host passed); this module
only judges, so it is tested without a database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any, Literal

from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import BadExpectation, Expectations, expectations
from dcctl.results.metrics import MetricPoint

Direction = Literal["higher", "lower"]
RESULT_PREFIX = "baseline"
# Only a passing or warning result's figures are measured right; a failed or broken run's
# are already a finding of their own.
JUDGED_STATUSES = frozenset({"pass", "warn"})
# The fewest baseline values a judgement needs (fewer when baseline_runs asks for fewer):
# one or two runs make a noisy median.
MIN_BASELINE_VALUES = 3

# Metric keys (the part after the result id) that are set-up, not measurement: the message
# size, rank and node counts, the model's reference peak, a seeded model's first loss.
_NOT_JUDGED = frozenset({"bytes", "ranks", "nodes", "peak_tflops", "loss_initial"})
_HIGHER = ("tflops", "busbw_gbs", "algbw_gbs", "mb_s", "iops", "efficiency", "mfu")
_LOWER_UNITS = ("_us", "_ns", "_ms", "_s")
_LOWER_WORDS = frozenset({"latency", "time", "loss"})


def metric_key(name: str) -> str:
    """`bench.gemm.bf16.tflops` -> `tflops`: the figure's own name within its result."""
    return name.rsplit(".", 1)[-1]


def better(name: str) -> Direction | None:
    """Which way the metric `name` improves, from its key; None: not judged (a count, a
    ratio judged by its own threshold, or a key this table does not know)."""
    key = metric_key(name)
    words = key.split("_")
    if key in _NOT_JUDGED:
        return None
    # Rates before units: samples_per_s ends like a duration but grows with speed.
    if "per" in words and "s" in words[words.index("per") :]:
        return "higher"
    if any(key == suffix or key.endswith(f"_{suffix}") for suffix in _HIGHER):
        return "higher"
    if key.endswith(_LOWER_UNITS) or _LOWER_WORDS.intersection(words):
        return "lower"
    return None


def change(value: float, reference: float) -> float:
    """(value - reference) / |reference|: +0.1 is 10 % above. The reference is not 0."""
    return (value - reference) / abs(reference)


def worse_by(direction: Direction, relative: float) -> float:
    """How much worse a relative change is in `direction` (negative: better)."""
    return -relative if direction == "higher" else relative


def figure(value: float) -> str:
    """A figure as a message shows it: 781.2, 1,840,000, 0.0421."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"


def percent(fraction: float) -> str:
    return f"{abs(fraction) * 100:.1f}%"


def gpu_of(index: int | None) -> dict[str, Any] | None:
    """The Result.gpu of a per-GPU figure: its index (a history point keeps no bus id)."""
    return None if index is None else {"index": index, "pci_bus_id": None, "serial": None}


def regression_results(
    current: Sequence[MetricPoint],
    baselines: Mapping[tuple[str, int | None], Sequence[float]],
    expect: Mapping[str, Any] | Expectations,
) -> list[Result]:
    """One finding per figure worse than its baseline by more than regression_max_drop
    (warn, or fail with regression_fail); one `baseline` pass when every judged figure held;
    nothing when no figure has enough history yet.

    `baselines`: per (metric, gpu index), the host's values from its last passing runs,
    newest first; the median of the first `baseline_runs` of them is the baseline.
    """
    try:
        limits = _Limits(expectations(expect))
    except BadExpectation as exc:
        return [Result(RESULT_PREFIX, "error", str(exc), expected=exc.value, kind="bench")]
    judged = 0
    findings: list[Result] = []
    for point in current:
        history = _history(point, baselines, limits.runs)
        direction = better(point.name)
        if history is None or direction is None:
            continue
        judged += 1
        reference = median(history)
        relative = change(point.value, reference)
        if worse_by(direction, relative) > limits.max_drop:
            findings.append(_finding(point, direction, reference, relative, len(history), limits))
    if findings or not judged:
        return findings
    message = (
        f"{judged} figure{'s' if judged != 1 else ''} within {percent(limits.max_drop)} of "
        f"{'its' if judged == 1 else 'their'} baseline{'s' if judged != 1 else ''}"
    )
    expected = {"max_drop": limits.max_drop, "runs": limits.runs}
    return [Result(RESULT_PREFIX, "pass", message, judged, expected, "bench")]


class _Limits:
    """The expect keys a baseline reads, read once (BadExpectation from a malformed one)."""

    def __init__(self, expect: Expectations) -> None:
        self.runs: int = expect.get("baseline_runs")
        self.max_drop: float = expect.get("regression_max_drop")
        self.fail: bool = expect.get("regression_fail")


def _history(
    point: MetricPoint,
    baselines: Mapping[tuple[str, int | None], Sequence[float]],
    runs: int,
) -> list[float] | None:
    """The values the point is judged against; None when it is not judged."""
    if point.status not in JUDGED_STATUSES:
        return None
    values = list(baselines.get(point.key, ()))[:runs]
    if len(values) < min(MIN_BASELINE_VALUES, runs):
        return None
    # A zero baseline has no relative change to speak of.
    return values if median(values) != 0 else None


def _finding(
    point: MetricPoint,
    direction: Direction,
    reference: float,
    relative: float,
    runs: int,
    limits: _Limits,
) -> Result:
    where = f"GPU {point.gpu_index}: " if point.gpu_index is not None else ""
    side = "below" if relative < 0 else "above"
    message = (
        f"{where}{point.name} {figure(point.value)} is {percent(relative)} {side} its baseline "
        f"{figure(reference)} (median of the last {runs} passing run{'s' if runs != 1 else ''}; "
        f"{'higher' if direction == 'higher' else 'lower'} is better, "
        f"{percent(limits.max_drop)} allowed)"
    )
    return Result(
        id=f"{RESULT_PREFIX}.{point.name}",
        status="fail" if limits.fail else "warn",
        message=message,
        observed=point.value,
        expected={"baseline": reference, "max_drop": limits.max_drop, "runs": runs},
        kind="bench",
        gpu=gpu_of(point.gpu_index),
        metrics={"value": point.value, "baseline": reference, "change": relative},
    )
