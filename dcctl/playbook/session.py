"""One step of a run, end to end: fan out a node task, judge each payload, store each host's
result the moment it lands, and build the run document.

A state dir that cannot take the run's files does not stop the run: the results are still
measured and returned, with the first write that failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcctl.evaluate.result import Result
from dcctl.fleet.executor import Fleet, HostProgressCallback
from dcctl.fleet.outcome import HostOutcome
from dcctl.inventory.model import Host
from dcctl.results.document import RunMeta, host_document, run_document
from dcctl.results.store import RunStore, SaveError, new_run_id
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


@dataclass(frozen=True)
class StepRun:
    document: dict[str, Any]
    run_dir: Path
    # The first of the run's files that could not be written, if any.
    save_error: SaveError | None = None
    # run.json is in run_dir (then the run can be read back, whatever else failed).
    run_saved: bool = True


def run_step(
    spec: StepSpec,
    hosts: Sequence[Host],
    inventory_source: str,
    state_dir: Path,
    fleet: Fleet,
    on_progress: ProgressCallback,
    on_node_progress: HostProgressCallback | None = None,
) -> StepRun:
    """Run one step; `fleet` holds the connections, so the steps of a run share them.

    `on_progress` is told each host's status as it lands; `on_node_progress`, if given, the
    latest progress line of a host still running (host name, the line's object), a few times
    a second at most. Both are called in this thread."""
    meta, store = open_run(spec.command, inventory_source, state_dir)
    documents: dict[str, dict[str, Any]] = {}

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
        documents[outcome.host.name] = document
        store.write_host(outcome.host.name, document)  # a failure is kept in store.error
        on_progress(outcome.host.name, document["status"])

    # Passed only when wanted: a stand-in fleet (a recorded run replayed) need not take it.
    if on_node_progress is None:
        fleet_run = fleet.run(hosts, spec.task, spec.params_for, spec.timeout_s, record)
    else:
        fleet_run = fleet.run(
            hosts, spec.task, spec.params_for, spec.timeout_s, record, on_node_progress
        )
    ordered = [documents[host.name] for host in hosts if host.name in documents]
    document = run_document(
        meta, ordered, fleet_run.interrupted, finished_at=datetime.now(timezone.utc)
    )
    return close_run(store, document)


def open_run(command: str, inventory_source: str, state_dir: Path) -> tuple[RunMeta, RunStore]:
    """A new run of `command`: its id, start time and directory."""
    started = datetime.now(timezone.utc)
    meta = RunMeta(
        run_id=new_run_id(command, started),
        command=command,
        inventory=inventory_source,
        started_at=started,
    )
    return meta, RunStore(state_dir, meta.run_id)


def close_run(store: RunStore, document: dict[str, Any]) -> StepRun:
    """Save run.json last, and say what was saved."""
    store.write_run(document)
    return StepRun(
        document=document,
        run_dir=store.run_dir,
        save_error=store.error,
        run_saved=store.run_saved,
    )
