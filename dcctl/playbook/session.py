"""One step of a run, end to end: fan out a node task, judge each payload, store each host's
result the moment it lands, and build the run document."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcctl.evaluate.result import Result
from dcctl.fleet.executor import Fleet, FleetOptions, HostOutcome
from dcctl.inventory.model import Host
from dcctl.results.document import RunMeta, host_document, run_document
from dcctl.results.store import RunStore, new_run_id

Evaluator = Callable[[Host, dict[str, Any]], list[Result]]
ParamsFor = Callable[[Host], dict[str, Any]]
ProgressCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class StepSpec:
    command: str
    task: str
    params_for: ParamsFor
    evaluate: Evaluator
    timeout_s: float


@dataclass(frozen=True)
class StepRun:
    document: dict[str, Any]
    run_dir: Path


def run_step(
    spec: StepSpec,
    hosts: Sequence[Host],
    inventory_source: str,
    state_dir: Path,
    fleet_options: FleetOptions,
    on_progress: ProgressCallback,
) -> StepRun:
    started = datetime.now(timezone.utc)
    meta = RunMeta(
        run_id=new_run_id(spec.command, started),
        command=spec.command,
        inventory=inventory_source,
        started_at=started,
    )
    store = RunStore(state_dir, meta.run_id)
    documents: dict[str, dict[str, Any]] = {}

    def record(outcome: HostOutcome) -> None:
        facts = outcome.payload or {}
        results = spec.evaluate(outcome.host, facts) if outcome.error is None else []
        document = host_document(outcome, facts, results)
        store.write_host(outcome.host.name, document)
        documents[outcome.host.name] = document
        on_progress(outcome.host.name, document["status"])

    with Fleet(fleet_options) as fleet:
        fleet_run = fleet.run(hosts, spec.task, spec.params_for, spec.timeout_s, record)
    ordered = [documents[host.name] for host in hosts if host.name in documents]
    document = run_document(
        meta, ordered, fleet_run.interrupted, finished_at=datetime.now(timezone.utc)
    )
    store.write_run(document)
    return StepRun(document=document, run_dir=store.run_dir)
