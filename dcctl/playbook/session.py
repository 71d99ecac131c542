"""One step of a run on each host by itself: fan out a node task, judge each payload, and hand
each host's document to the run's recorder the moment it lands."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

from dcctl.evaluate.result import Result
from dcctl.fleet.executor import Fleet, HostProgressCallback
from dcctl.fleet.outcome import HostOutcome
from dcctl.inventory.model import Host
from dcctl.playbook.model import PlaybookStep, StepKind
from dcctl.playbook.recorder import RunRecorder, RunSaved
from dcctl.results.document import RunMeta, host_document
from dcctl.results.store import new_run_id
from dcctl.transport.base import HostError

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


def run_host_step(
    spec: StepSpec,
    hosts: Sequence[Host],
    fleet: Fleet,
    recorder: RunRecorder,
    index: int,
    on_progress: ProgressCallback,
    on_node_progress: HostProgressCallback | None = None,
) -> bool:
    """Run step `index` (begun on `recorder`) on `hosts`; True when it was stopped.

    `fleet` holds the connections, so the steps of a run share them. `on_progress` is told
    each host's status as it lands; `on_node_progress`, if given, the latest progress line of
    a host still running (host name, the line's object), a few times a second at most. Both
    are called in this thread."""

    def record(outcome: HostOutcome) -> None:
        facts = outcome.payload or {}
        results: list[Result] = []
        if outcome.error is None:
            try:
                results = spec.evaluate(outcome.host, facts)
            except Exception as exc:  # one host's odd facts must not end the whole run
                error = HostError(
                    "runtime", f"evaluating results failed: {type(exc).__name__}: {exc}"
                )
                outcome = dataclasses.replace(outcome, error=error)
        document = host_document(outcome, facts, results)
        recorder.host_landed(index, document)
        on_progress(outcome.host.name, document["status"])

    # Passed only when wanted: a stand-in fleet (a recorded run replayed) need not take it.
    if on_node_progress is None:
        fleet_run = fleet.run(hosts, spec.task, spec.params_for, spec.timeout_s, record)
    else:
        fleet_run = fleet.run(
            hosts, spec.task, spec.params_for, spec.timeout_s, record, on_node_progress
        )
    return fleet_run.interrupted


def run_step(
    spec: StepSpec,
    hosts: Sequence[Host],
    inventory_source: str,
    state_dir: Path,
    fleet: Fleet,
    on_progress: ProgressCallback,
    on_node_progress: HostProgressCallback | None = None,
) -> RunSaved:
    """A run of this one step, with no history: what a library caller or a test wants."""
    recorder = RunRecorder(new_run_meta(spec.command, inventory_source), state_dir, None)
    recorder.expect_hosts([host.name for host in hosts])
    index = recorder.begin_step(PlaybookStep(name=spec.command, kind=cast(StepKind, spec.command)))
    interrupted = run_host_step(spec, hosts, fleet, recorder, index, on_progress, on_node_progress)
    recorder.finish_step(index, interrupted)
    return recorder.finish(interrupted)


def new_run_meta(command: str, inventory_source: str, playbook: str | None = None) -> RunMeta:
    """A new run of `command`: its id and start time."""
    started = datetime.now(timezone.utc)
    return RunMeta(
        run_id=new_run_id(command, started),
        command=command,
        inventory=inventory_source,
        started_at=started,
        playbook=playbook,
    )
