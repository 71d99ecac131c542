"""The jobs that span hosts, planned and judged: certify (one group of every node), cluster
allreduce (one group), and pairs (every pair at once, then the nodes below threshold again
with a node that passed).

Each builder returns the `conduct` of a GangStepSpec; the CLI only gathers the settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dcctl.evaluate.gang_input import GangRun
from dcctl.fleet.gang import GangRunner, GangSpec, HostParams
from dcctl.fleet.progress import HostProgressCallback
from dcctl.inventory.model import Host
from dcctl.playbook.gang_step import Conduct, GangOutcome

# NCCL's switches that keep a job off NVLink and shared memory, so that only the network
# between nodes is measured (--net-only).
NET_ONLY_ENV = {"NCCL_P2P_DISABLE": "1", "NCCL_SHM_DISABLE": "1"}


@dataclass(frozen=True)
class JobSettings:
    """What every gang job of a command shares."""

    quick: bool
    budget_s: float
    join_timeout_s: float
    nproc_per_node: int | None = None
    port: int | None = None
    # A parsed DCCTL_FAULT (dcctl.node.bench.faults), or None.
    fault: dict[str, Any] | None = None
    env: dict[str, str] = field(default_factory=dict)


def _fault_params(settings: JobSettings) -> tuple[dict[str, Any], HostParams | None]:
    """Rank faults go to every node (the rank picks itself out); a host fault only to its
    host's node."""
    fault = settings.fault
    if fault is None or fault.get("host") is None:
        return {"fault": fault}, None
    target = fault["host"]

    def host_params(host: Host) -> dict[str, Any]:
        return {"fault": fault if host.name == target else None}

    return {"fault": None}, host_params


def _spec(settings: JobSettings, worker: str, params: dict[str, Any], defaults: Any) -> GangSpec:
    shared, host_params = _fault_params(settings)

    def params_for(device: str) -> dict[str, Any]:
        return {**defaults(device), **params, "device": device, **shared}

    return GangSpec(
        worker=worker,
        params_for=params_for,
        join_timeout_s=settings.join_timeout_s,
        budget_s=settings.budget_s,
        nproc_per_node=settings.nproc_per_node,
        env=dict(settings.env),
        port=settings.port,
        host_params=host_params,
    )


def certify_job(settings: JobSettings, steps: int | None) -> Conduct:
    """One group of every selected node training the reference MLP."""
    from dcctl.evaluate.certify import evaluate_certify
    from dcctl.node.bench import certify

    def defaults(device: str) -> dict[str, Any]:
        chosen = certify.defaults(device, settings.quick)
        if steps is not None:
            # The warm-up and the replayed prefix are parts of the run: they shrink with it.
            chosen.update(steps=steps, warmup_steps=min(chosen["warmup_steps"], steps),
                          replay_steps=min(chosen["replay_steps"], steps))  # fmt: skip
        return chosen

    spec = _spec(settings, "certify", {}, defaults)

    def conduct(
        runner: GangRunner, hosts: Sequence[Host], on_progress: HostProgressCallback | None
    ) -> GangOutcome:
        runs = runner.run([list(hosts)], spec, on_progress)
        return GangOutcome(runs, evaluate_certify(runs[0]))

    return conduct


def _allreduce_spec(settings: JobSettings, sweep: dict[str, int]) -> GangSpec:
    from dcctl.node.bench.task import with_defaults

    def defaults(device: str) -> dict[str, Any]:
        return with_defaults("allreduce", {}, device, settings.quick)

    return _spec(settings, "allreduce", sweep, defaults)


def cluster_allreduce_job(settings: JobSettings, sweep: dict[str, int], net_only: bool) -> Conduct:
    """All GPUs of all selected nodes in one allreduce job."""
    from dcctl.evaluate.cluster_allreduce import evaluate_cluster_allreduce

    spec = _allreduce_spec(settings, sweep)

    def conduct(
        runner: GangRunner, hosts: Sequence[Host], on_progress: HostProgressCallback | None
    ) -> GangOutcome:
        runs = runner.run([list(hosts)], spec, on_progress)
        return GangOutcome(runs, evaluate_cluster_allreduce(runs[0], net_only))

    return conduct


def pairs_job(settings: JobSettings, sweep: dict[str, int]) -> Conduct:
    """Every pair at once; then each node below threshold with a node that passed, so the
    slow node is named: it is the one below threshold with two different partners."""
    from dcctl.evaluate import cluster_allreduce as judge

    spec = _allreduce_spec(settings, sweep)

    def conduct(
        runner: GangRunner, hosts: Sequence[Host], on_progress: HostProgressCallback | None
    ) -> GangOutcome:
        first = runner.run([list(pair) for pair in judge.pair_up(list(hosts))], spec, on_progress)
        threshold, source = judge.pairs_threshold(first)
        second: list[GangRun] = []
        again = judge.second_pass(first, threshold, list(hosts))
        # A node may be in several second-pass pairs (the odd one out, a passing node lent
        # twice): each wave holds a node once.
        for wave in judge.waves(again):
            if runner.interrupted:
                break
            second += runner.run([list(pair) for pair in wave], spec, on_progress)
        return GangOutcome(first + second, judge.evaluate_pairs(first, second, threshold, source))

    return conduct
