"""Hosts against their fleet: figures far off the median of hosts with the same GPU model
(`fleet.outlier.*`), and software or firmware versions that differ from the majority of those
hosts (`drift.*`).

Both compare hosts of one GPU model only: an A100 node is neither slow next to an H100 one
nor drifted for running another VBIOS. Neither needs an `expect` to pin a value: the fleet is
the reference, so a rack that is uniformly on one driver passes whatever that driver is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from statistics import median
from typing import Any, TypeAlias

from dcctl.evaluate.baselines import (
    JUDGED_STATUSES,
    Direction,
    better,
    change,
    figure,
    percent,
    worse_by,
)
from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import BadExpectation, Expectations, expectations
from dcctl.results.metrics import MetricPoint

OUTLIER_PREFIX = "fleet.outlier"
DRIFT_PREFIX = "drift"
# Fewer hosts make no fleet: with two, neither can be told to be the odd one.
MIN_OUTLIER_HOSTS = 3
# How many median absolute deviations from the median a figure may sit, whatever the spread.
OUTLIER_MADS = 3.0
MIN_DRIFT_HOSTS = 2
CPU_MODEL = "CPU"

Expect: TypeAlias = Mapping[str, Any] | Expectations


def model_of(facts: Mapping[str, Any] | None) -> str | None:
    """The host's GPU model: its first GPU's name, "CPU" for a host with no GPUs, None when
    the facts do not say (the GPU probe failed, or the host was never reached)."""
    gpus = facts.get("gpus") if isinstance(facts, Mapping) else None
    if not isinstance(gpus, list):
        return None
    if not gpus:
        return CPU_MODEL
    name = gpus[0].get("name") if isinstance(gpus[0], Mapping) else None
    return name if isinstance(name, str) and name else None


# --- fleet outliers ---------------------------------------------------------------------------


def host_figures(points: Sequence[MetricPoint]) -> dict[str, float]:
    """Per judged metric, the host's median across its GPUs (one value for node-wide ones):
    hosts are compared as wholes, so an 8-GPU host counts once, like a 4-GPU one."""
    values: dict[str, list[float]] = defaultdict(list)
    for point in points:
        if point.status in JUDGED_STATUSES and better(point.name) is not None:
            values[point.name].append(point.value)
    return {name: median(found) for name, found in values.items()}


def fleet_outliers(
    points_by_host: Mapping[str, Sequence[MetricPoint]],
    model_by_host: Mapping[str, str | None],
    expect_by_host: Mapping[str, Expect],
) -> dict[str, list[Result]]:
    """Per host, a `fleet.outlier.<metric>` warning for each figure worse than the median of
    its GPU model's hosts by more than max(3 MADs, outlier_min_spread x the median).

    Only the bad side is a finding: a host faster than its fleet is not at fault. A group
    needs MIN_OUTLIER_HOSTS hosts with the figure; hosts without a known model are left out.
    A host whose outlier_min_spread is malformed still counts in its groups and gets one
    error instead of its verdicts. Hosts with nothing to report are absent from the answer.
    """
    groups: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    spreads: dict[str, float] = {}
    found: dict[str, list[Result]] = defaultdict(list)
    for host, points in points_by_host.items():
        model = model_by_host.get(host)
        if model is None:
            continue
        try:
            spreads[host] = expectations(expect_by_host.get(host, {})).get("outlier_min_spread")
        except BadExpectation as exc:
            found[host].append(
                Result(OUTLIER_PREFIX, "error", str(exc), expected=exc.value, kind="bench")
            )
        for name, value in host_figures(points).items():
            groups[(model, name)][host] = value
    for (model, name), values in sorted(groups.items()):
        if len(values) >= MIN_OUTLIER_HOSTS:
            for host, result in _group_outliers(model, name, values, spreads):
                found[host].append(result)
    return dict(found)


def _group_outliers(
    model: str, name: str, values: Mapping[str, float], spreads: Mapping[str, float]
) -> list[tuple[str, Result]]:
    direction = better(name)
    middle = median(values.values())
    if direction is None or middle == 0:
        return []
    mad = median(abs(value - middle) for value in values.values())
    group = _Group(model, name, middle, mad, len(values), direction)
    results = []
    for host, value in sorted(values.items()):
        spread = spreads.get(host)
        if spread is None:  # its expectation was malformed: reported once, above
            continue
        allowed = max(OUTLIER_MADS * mad, spread * abs(middle))
        if worse_by(direction, value - middle) > allowed:
            results.append((host, group.outlier(value, allowed, spread)))
    return results


class _Group:
    """One GPU model's hosts and one figure: what an outlier's result says about them."""

    def __init__(
        self, model: str, name: str, middle: float, mad: float, size: int, direction: Direction
    ) -> None:
        self.model, self.name, self.middle, self.mad = model, name, middle, mad
        self.size, self.direction = size, direction

    def outlier(self, value: float, allowed: float, spread: float) -> Result:
        relative = change(value, self.middle)
        side = "below" if relative < 0 else "above"
        message = (
            f"{self.name} {figure(value)} is {percent(relative)} {side} the median "
            f"{figure(self.middle)} of {self.size} hosts with {shown(self.model)} "
            f"({'higher' if self.direction == 'higher' else 'lower'} is better; allowed "
            f"{figure(allowed)} off it)"
        )
        expected = {
            "median": self.middle,
            "mad": self.mad,
            "hosts": self.size,
            "max_deviation": allowed,
            "min_spread": spread,
        }
        return Result(
            id=f"{OUTLIER_PREFIX}.{self.name}",
            status="warn",
            message=message,
            observed=value,
            expected=expected,
            kind="bench",
            metrics={"value": value, "median": self.middle, "change": relative},
        )


# --- version drift ----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _joined(values: Sequence[Any]) -> str | None:
    """A host's set of versions (its GPUs' VBIOS, its HCAs' firmware) as one comparable text;
    None when none is known."""
    known = sorted({text for value in values if (text := _text(value)) is not None})
    return ", ".join(known) if known else None


def _vbios(facts: Mapping[str, Any]) -> str | None:
    gpus = facts.get("gpus")
    if not isinstance(gpus, list):
        return None
    return _joined([gpu.get("vbios") for gpu in gpus if isinstance(gpu, Mapping)])


def _versions(facts: Mapping[str, Any], key: str) -> Any:
    versions = facts.get("versions")
    return versions.get(key) if isinstance(versions, Mapping) else None


def _hca_firmware(facts: Mapping[str, Any]) -> str | None:
    firmware = _versions(facts, "hca_firmware")
    return _joined(list(firmware.values())) if isinstance(firmware, Mapping) else None


# (key in the result id, words in the message, how to read it from a host's facts)
DRIFT_KEYS: tuple[tuple[str, str, Callable[[Mapping[str, Any]], str | None]], ...] = (
    ("driver", "driver", lambda facts: _text(facts.get("driver"))),
    ("vbios", "VBIOS", _vbios),
    ("kernel", "kernel", lambda facts: _text(facts.get("kernel"))),
    ("hca_firmware", "HCA firmware", _hca_firmware),
    ("ofed", "OFED", lambda facts: _text(_versions(facts, "ofed"))),
    ("nccl", "NCCL", lambda facts: _text(_versions(facts, "nccl"))),
)


def version_drift(
    facts_by_host: Mapping[str, Mapping[str, Any] | None],
    model_by_host: Mapping[str, str | None],
) -> dict[str, list[Result]]:
    """Per host, a `drift.<key>` warning for each of driver, VBIOS, kernel, HCA firmware, OFED
    and NCCL whose value differs from the one most hosts of its GPU model run.

    A host's VBIOS and HCA firmware are the set of its devices' versions. A value is compared
    among the hosts of its model that report one, when there are MIN_DRIFT_HOSTS of them. The
    majority is the most common value when no other is as common; on a tie there is none, and
    every host of the group is warned, each told the split (with two hosts that disagree,
    nothing says which one is right). Hosts with nothing to report are absent from the answer.
    """
    by_model: dict[str, list[tuple[str, Mapping[str, Any]]]] = defaultdict(list)
    for host, facts in facts_by_host.items():
        model = model_by_host.get(host)
        if model is not None and isinstance(facts, Mapping):
            by_model[model].append((host, facts))
    found: dict[str, list[Result]] = defaultdict(list)
    for model, hosts in sorted(by_model.items()):
        for key, words, read in DRIFT_KEYS:
            values = {host: value for host, facts in hosts if (value := read(facts)) is not None}
            for host, result in _drifted(model, key, words, values):
                found[host].append(result)
    return dict(found)


def _drifted(
    model: str, key: str, words: str, values: Mapping[str, str]
) -> list[tuple[str, Result]]:
    if len(values) < MIN_DRIFT_HOSTS:
        return []
    counts = Counter(values.values()).most_common()
    if len(counts) == 1:
        return []
    size = len(values)
    result_id = f"{DRIFT_PREFIX}.{key}"
    if counts[0][1] > counts[1][1]:
        majority, on = counts[0]
        return [
            (host, _against_majority(result_id, words, value, majority, on, size, model))
            for host, value in sorted(values.items())
            if value != majority
        ]
    split = listed((f"{shown(v)} on {n}" for v, n in counts), len(counts), "; ")
    tied = sorted(value for value, n in counts if n == counts[0][1])
    return [
        (
            host,
            Result(
                result_id,
                "warn",
                f"{words} {shown(value)}: hosts with {shown(model)} disagree with no majority "
                f"({split} of {size} hosts)",
                observed=value,
                expected=tied,
            ),
        )
        for host, value in sorted(values.items())
    ]


def _against_majority(
    result_id: str, words: str, value: str, majority: str, on: int, size: int, model: str
) -> Result:
    message = (
        f"{words} {shown(value)} differs from {shown(majority)} on {on} of {size} hosts "
        f"({shown(model)})"
    )
    return Result(result_id, "warn", message, observed=value, expected=majority)
