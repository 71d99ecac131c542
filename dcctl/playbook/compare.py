"""Findings about a step that need more than one host's figures: each host against its own
history (baselines), against the other hosts of its GPU model (outliers), and its software
versions against theirs (drift). Added to the hosts' documents once the step is over."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from statistics import median
from typing import Any

from dcctl.evaluate.result import Result
from dcctl.inventory.model import Host
from dcctl.playbook.recorder import RunRecorder
from dcctl.results.history import History, HistoryError
from dcctl.results.metrics import MetricPoint, host_points, result_points

Key = tuple[str, int | None]


def _worse_of(
    recent: Mapping[Key, Sequence[float]], long_ago: Mapping[Key, Sequence[float]]
) -> dict[Key, Sequence[float]]:
    """Per figure, the baseline a decline shows against: the recent runs, or the runs from
    long ago where those were better. A slide of 2 % a week keeps the recent baseline with it;
    a month back it is 8 %."""
    from dcctl.evaluate.baselines import better

    chosen: dict[Key, Sequence[float]] = dict(recent)
    for key, old in long_ago.items():
        new = recent.get(key)
        direction = better(key[0])
        if not old or direction is None:
            continue
        if not new or (median(old) > median(new)) == (direction == "higher"):
            chosen[key] = old
    return chosen


def _baselines(
    history: History, run_id: str, names: list[str], hosts: Sequence[Host]
) -> dict[str, dict[Key, Sequence[float]]]:
    from dcctl.inventory.expect_keys import value

    runs = max(int(value(host.expect, "baseline_runs")) for host in hosts)
    long_days = max(float(value(host.expect, "baseline_long_days")) for host in hosts)
    recent = history.baselines(names, runs, run_id)
    if not long_days:
        return {name: dict(found) for name, found in recent.items()}
    long_ago = history.baselines(names, runs, run_id, min_age_s=long_days * 86400)
    return {name: _worse_of(recent.get(name, {}), long_ago.get(name, {})) for name in names}


def _baseline_results(
    history: History,
    run_id: str,
    points: dict[str, list[MetricPoint]],
    hosts: dict[str, Host],
) -> dict[str, list[Result]]:
    from dcctl.evaluate.baselines import regression_results

    judged = [name for name, found in points.items() if found]
    if not judged:
        return {}
    baselines = _baselines(history, run_id, judged, [hosts[name] for name in judged])
    return {
        name: regression_results(points[name], baselines.get(name, {}), hosts[name].expect)
        for name in judged
    }


def _cluster_baseline_results(
    history: History, recorder: RunRecorder, index: int, hosts: Sequence[Host]
) -> list[Result]:
    """A job across hosts (certify's samples/s, cluster busbw) against the same job's figures
    in earlier runs: the history keeps them under one cluster pseudo-host."""
    from dcctl.evaluate.baselines import regression_results
    from dcctl.results.history import CLUSTER_HOST

    points = [p for r in recorder.step_cluster_results(index) for p in result_points(r)]
    if not points or not hosts:
        return []
    # A job's thresholds are its first node's, as its verdict's are.
    lead = hosts[0]
    baselines = _baselines(history, recorder.run_id, [CLUSTER_HOST], [lead])
    return regression_results(points, baselines.get(CLUSTER_HOST, {}), lead.expect)


def compare_step(
    recorder: RunRecorder, index: int, hosts: Sequence[Host], history: History | None
) -> None:
    """Judge step `index` across hosts and across time, and add what is found."""
    from dcctl.evaluate.fleet_compare import fleet_outliers, model_of, version_drift

    documents = {
        name: document
        for name, document in recorder.step_hosts(index).items()
        if document["error"] is None
    }
    by_name = {host.name: host for host in hosts if host.name in documents}
    points = {name: host_points(document) for name, document in documents.items()}
    # A benchmark's facts may not name the GPUs: the run's earlier check step does. A host
    # whose model nobody knows is compared with no one.
    models = {
        name: model_of(doc["facts"]) or model_of(recorder.host_facts(name))
        for name, doc in documents.items()
    }
    found: dict[str, list[Result]] = defaultdict(list)
    if history is not None:
        try:
            judged = _baseline_results(history, recorder.run_id, points, by_name)
        except HistoryError as exc:
            recorder.history_failed(exc)
            judged = {}
        for name, results in judged.items():
            found[name].extend(results)
    expects = {name: host.expect for name, host in by_name.items()}
    for name, results in fleet_outliers(points, models, expects).items():
        found[name].extend(results)
    if recorder.step_kind(index) == "check":
        facts: dict[str, dict[str, Any]] = {name: doc["facts"] for name, doc in documents.items()}
        for name, results in version_drift(facts, models).items():
            found[name].extend(results)
    for name, results in found.items():
        recorder.add_results(index, name, [result.to_json() for result in results])
    if history is not None:
        try:
            cluster = _cluster_baseline_results(history, recorder, index, hosts)
        except HistoryError as exc:
            recorder.history_failed(exc)
            cluster = []
        recorder.add_cluster_results(index, [result.to_json() for result in cluster])
