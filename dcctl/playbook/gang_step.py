"""A step whose work spans hosts (certify, cluster and pairs allreduce): it runs gang jobs,
judges them with a cluster-level evaluator, and stores a run document with `cluster_results`
beside a document per host (what that host ran, and the results that concern it).

Every host file is written once its jobs are over and judged: a gang's figures only mean
something together, so there is nothing to save per host before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dcctl.evaluate.gang_input import ClusterJudgement, GangRun, NodeRun
from dcctl.fleet.gang import GangRunner
from dcctl.fleet.outcome import HostOutcome
from dcctl.fleet.progress import HostProgressCallback
from dcctl.inventory.model import Host
from dcctl.playbook.recorder import RunRecorder
from dcctl.playbook.session import ProgressCallback
from dcctl.results.document import host_document


@dataclass(frozen=True)
class GangOutcome:
    """Every group's job of every pass, and the cluster evaluator's judgement of them."""

    runs: list[GangRun]
    judgement: ClusterJudgement


Conduct = Callable[[GangRunner, Sequence[Host], HostProgressCallback | None], GangOutcome]


@dataclass(frozen=True)
class GangStepSpec:
    """`conduct` plans the groups (one, or pairs in two passes), runs them and judges them."""

    command: str
    conduct: Conduct


def _node_runs(host: Host, runs: Sequence[GangRun]) -> list[NodeRun]:
    return [node for run in runs for node in run.nodes if node.host.name == host.name]


def _host_outcome(host: Host, runs: Sequence[GangRun]) -> tuple[HostOutcome, dict[str, Any]]:
    """The host's part: what its `gang` tasks returned, and, when its last job never ran on it
    (unreachable, not started because of another node, stopped), why."""
    nodes = _node_runs(host, runs)
    payloads = [node.payload for node in nodes if node.payload is not None]
    # The GPUs (NVML identity) beside every job's payload: what the host ran on, at a glance.
    facts = {"gpus": payloads[-1].get("gpus") or [] if payloads else [], "gang": payloads}
    last = nodes[-1] if nodes else None
    error = last.error if last is not None and last.payload is None else None
    duration = sum(node.duration_s for node in nodes)
    return HostOutcome(host, facts, error, duration), facts


def run_gang_step(
    spec: GangStepSpec,
    hosts: Sequence[Host],
    runner: GangRunner,
    recorder: RunRecorder,
    index: int,
    on_progress: ProgressCallback,
    on_node_progress: HostProgressCallback | None = None,
) -> bool:
    """Run step `index` (begun on `recorder`): the step's gang jobs on `hosts`, judged, every
    host's part and the cluster results handed to the recorder; True when it was stopped."""
    outcome = spec.conduct(runner, hosts, on_node_progress)
    for host in hosts:
        host_outcome, facts = _host_outcome(host, outcome.runs)
        results = outcome.judgement.host_results.get(host.name, [])
        document = host_document(host_outcome, facts, results)
        recorder.host_landed(index, document)
        on_progress(host.name, document["status"])
    recorder.cluster_results(index, outcome.judgement.cluster_results)
    return runner.interrupted
