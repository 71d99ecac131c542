"""Findings about a step that need more than one host's figures: each host against its own
history (baselines), against the other hosts of its GPU model (outliers), and its software
versions against theirs (drift). Added to the hosts' documents once the step is over."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dcctl.evaluate.result import Result
from dcctl.inventory.model import Host
from dcctl.playbook.recorder import RunRecorder
from dcctl.results.metrics import MetricPoint, host_points

if TYPE_CHECKING:
    from dcctl.results.history import History

# A model name for hosts whose facts do not say: they are compared with each other only.
UNKNOWN_MODEL = "unknown"


def _baseline_results(
    history: History,
    run_id: str,
    points: dict[str, list[MetricPoint]],
    hosts: dict[str, Host],
) -> dict[str, list[Result]]:
    from dcctl.evaluate.baselines import regression_results
    from dcctl.inventory.expect_keys import value

    judged = {name: found for name, found in points.items() if found}
    if not judged:
        return {}
    runs = max(int(value(hosts[name].expect, "baseline_runs")) for name in judged)
    baselines = history.baselines(list(judged), runs, run_id)
    return {
        name: regression_results(found, baselines.get(name, {}), hosts[name].expect)
        for name, found in judged.items()
    }


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
    # A benchmark's facts may not name the GPUs: the run's earlier check step does.
    models = {
        name: model_of(doc["facts"]) or model_of(recorder.host_facts(name)) or UNKNOWN_MODEL
        for name, doc in documents.items()
    }
    found: dict[str, list[Result]] = defaultdict(list)
    if history is not None:
        for name, results in _baseline_results(history, recorder.run_id, points, by_name).items():
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
