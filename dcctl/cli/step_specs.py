"""From a playbook step (its command and options) to what runs it: a node task on each host
(check, node-scope bench) or gang jobs across the hosts (certify, allreduce --scope cluster or
pairs). `dcctl check|bench|certify` and `dcctl run` build their steps here, so a step means
the same from the command line and from a playbook."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dcctl.cli.bench import (
    DTYPES,
    OVERHEAD_S,
    PREFLIGHT_ALLOWANCE_S,
    budgets,
    parse_size,
    parse_sweep,
)
from dcctl.cli.bounds import DEFAULT_JOIN_TIMEOUT_S
from dcctl.inventory.model import Host
from dcctl.playbook.gang_step import GangStepSpec
from dcctl.playbook.model import PlaybookStep
from dcctl.playbook.session import StepSpec

# A check's time on a host, connecting included, when the step does not set one.
CHECK_TIMEOUT_S = 60.0
# The workers' time on a node for certify, join included; generous, so a slow cluster is
# measured as slow rather than timed out. --quick on a CPU trains for seconds.
CERTIFY_QUICK_BUDGET_S = 300.0
CERTIFY_FULL_BUDGET_S = 1800.0


def build_step(step: PlaybookStep, hosts: Sequence[Host]) -> StepSpec | GangStepSpec:
    """What runs `step` on `hosts`; an InputError (a bad DCCTL_FAULT) means nothing ran."""
    if step.kind == "check":
        return _check(step)
    if step.kind == "certify":
        return _certify(step, hosts)
    if str(step.options.get("scope", "node")) != "node":
        return _bench_across_nodes(step, hosts)
    return _bench(step)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _check(step: PlaybookStep) -> StepSpec:
    from dcctl.evaluate.node import evaluate_node, health_expect
    from dcctl.node.probes.dcgm import DCGM_TIMEOUT_S

    dcgm = step.options.get("dcgm")

    def params_for(host: Host) -> dict[str, Any]:
        return {
            "scratch_dir": host.scratch_dir,
            "xid_window_h": health_expect(host.expect)["xid_window_h"],
            "dcgm_level": dcgm,
        }

    def evaluate(host: Host, facts: dict[str, Any]) -> list[Any]:
        return evaluate_node(facts, host.expect)

    timeout = step.timeout_s or CHECK_TIMEOUT_S
    return StepSpec(
        command="check",
        task="facts",
        params_for=params_for,
        evaluate=evaluate,
        timeout_s=timeout + (DCGM_TIMEOUT_S[dcgm] if dcgm else 0),
    )


def _bench(step: PlaybookStep) -> StepSpec:
    from dcctl.evaluate.bench import evaluate_bench

    options = step.options
    benchmark = str(options.get("benchmark", "all"))
    quick = bool(options.get("quick", False))
    chosen = ["gemm", "allreduce", "fio"] if benchmark == "all" else [benchmark]
    gemm: dict[str, Any] = parse_size(_str_or_none(options.get("size")))
    sweep = parse_sweep(_str_or_none(options.get("sizes")))
    duration = float(options.get("duration") or 0.0)
    if options.get("dtype"):
        gemm["dtypes"] = list(dict.fromkeys(options["dtype"]))
    if duration:
        gemm["duration_s"] = duration
    allowed = budgets(chosen, quick, len(gemm.get("dtypes", DTYPES)), duration)
    host_timeout = step.timeout_s or sum(allowed.values()) + PREFLIGHT_ALLOWANCE_S + OVERHEAD_S

    def params_for(host: Host) -> dict[str, Any]:
        return {
            "benchmarks": chosen,
            "quick": quick,
            "budgets_s": allowed,
            "scratch_dir": host.scratch_dir,
            "gemm": gemm,
            "allreduce": sweep,
            "fio": {},
        }

    def evaluate(host: Host, payload: dict[str, Any]) -> list[Any]:
        return evaluate_bench(payload, host.expect)

    return StepSpec(
        command="bench",
        task="bench",
        params_for=params_for,
        evaluate=evaluate,
        timeout_s=host_timeout,
    )


def _job_settings(step: PlaybookStep, budget_s: float, hosts: Sequence[Host]) -> Any:
    from dcctl.cli.certify import read_fault
    from dcctl.playbook.cluster_jobs import NET_ONLY_ENV, JobSettings

    options = step.options
    return JobSettings(
        quick=bool(options.get("quick", False)),
        budget_s=budget_s,
        join_timeout_s=float(options.get("join_timeout") or DEFAULT_JOIN_TIMEOUT_S),
        nproc_per_node=options.get("nproc_per_node"),
        port=options.get("port"),
        env=dict(NET_ONLY_ENV) if options.get("net_only") else {},
        fault=read_fault(hosts),
    )


def _bench_across_nodes(step: PlaybookStep, hosts: Sequence[Host]) -> GangStepSpec:
    from dcctl.playbook.cluster_jobs import cluster_allreduce_job, pairs_job

    options = step.options
    quick = bool(options.get("quick", False))
    join = float(options.get("join_timeout") or DEFAULT_JOIN_TIMEOUT_S)
    budget = step.timeout_s or budgets(["allreduce"], quick, 0, 0.0)["allreduce"] + join
    settings = _job_settings(step, budget, hosts)
    sweep = parse_sweep(_str_or_none(options.get("sizes")))
    if options.get("scope") == "pairs":
        return GangStepSpec(command="bench", conduct=pairs_job(settings, sweep))
    conduct = cluster_allreduce_job(settings, sweep, bool(options.get("net_only")))
    return GangStepSpec(command="bench", conduct=conduct)


def _certify(step: PlaybookStep, hosts: Sequence[Host]) -> GangStepSpec:
    from dcctl.playbook.cluster_jobs import certify_job

    quick = bool(step.options.get("quick", False))
    budget = step.timeout_s or (CERTIFY_QUICK_BUDGET_S if quick else CERTIFY_FULL_BUDGET_S)
    settings = _job_settings(step, budget, hosts)
    settings = dataclasses.replace(settings, env={})
    return GangStepSpec(command="certify", conduct=certify_job(settings, step.options.get("steps")))
