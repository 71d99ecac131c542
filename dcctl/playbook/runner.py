"""A run: the steps of a playbook, in order, on the selected hosts, under one run id, one run
directory and one run document. `dcctl check`, `bench` and `certify` are one-step runs of it.

Every step is built before the first one runs, so a step that cannot be built (a bad fault
injection, a bad size) stops the run before anything ran. A step that fails with
`on_fail: stop` and a stop signal both end the run there; the steps not run are listed as
skipped. Steps on each host alone share one set of connections; steps across hosts (gang jobs)
open their own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.progress import HostProgressCallback
from dcctl.fleet.signals import StopRequest
from dcctl.inventory.model import Host
from dcctl.playbook.compare import compare_step
from dcctl.playbook.gang_step import GangStepSpec, run_gang_step
from dcctl.playbook.model import Playbook, PlaybookStep
from dcctl.playbook.recorder import RunRecorder, RunSaved
from dcctl.playbook.session import StepSpec, new_run_meta, run_host_step

if TYPE_CHECKING:
    from dcctl.fleet.executor import Fleet
    from dcctl.results.history import History

BuildStep = Callable[[PlaybookStep, Sequence[Host]], "StepSpec | GangStepSpec"]


class StepProgress(Protocol):
    """What a step shows while it runs (dcctl.report.progress.HostProgress)."""

    wants_node_progress: bool

    def host_done(self, name: str, status: str) -> None: ...

    def node_progress(self, name: str, line: Mapping[str, Any]) -> None: ...


ProgressFor = Callable[[PlaybookStep, int], contextlib.AbstractContextManager[StepProgress]]


@dataclass(frozen=True)
class RunPlan:
    """What to run, where, and where to keep it."""

    playbook: Playbook
    # The run document's `command`: check, bench, certify, run or audit.
    command: str
    hosts: Sequence[Host]
    inventory_source: str
    state_dir: Path
    fleet_options: FleetOptions
    history: bool = True
    # The inventory file's text as the loader read it (None: the built-in inventory).
    inventory_text: str | None = None


@dataclass(frozen=True)
class PlannedStep:
    step: PlaybookStep
    hosts: tuple[Host, ...]
    spec: StepSpec | GangStepSpec


def _step_expect(inventory: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    """The step's thresholds over the inventory's; a step's null unsets the inventory's."""
    merged = {**inventory, **step}
    return {key: value for key, value in merged.items() if value is not None}


# Steps that need torch: they run on the venv `dcctl provision` recorded for a host whose
# inventory names no python. A check needs no torch and keeps the inventory's interpreter.
_RECORDED_PYTHON_KINDS = ("bench", "certify")


def _warn(message: str) -> None:
    print(f"dcctl: warning: {message}", file=sys.stderr)


def plan_steps(plan: RunPlan, build: BuildStep) -> list[PlannedStep]:
    """Every step built, with its hosts carrying the step's `expect` over the inventory's,
    and, for bench and certify, the python `dcctl provision` recorded (results/provisioned)."""
    planned = []
    recorded: tuple[Host, ...] | None = None  # read once, for the first step that wants it
    for step in plan.playbook.steps:
        base: Sequence[Host] = plan.hosts
        if step.kind in _RECORDED_PYTHON_KINDS:
            if recorded is None:
                from dcctl.results.provisioned import with_recorded_python

                recorded = with_recorded_python(plan.hosts, plan.state_dir, _warn)
            base = recorded
        hosts = tuple(
            dataclasses.replace(host, expect=_step_expect(host.expect, step.expect))
            if step.expect
            else host
            for host in base
        )
        planned.append(PlannedStep(step, hosts, build(step, hosts)))
    return planned


def _open_history(plan: RunPlan) -> tuple[History | None, str | None]:
    if not plan.history:
        return None, None
    from dcctl.results.history import History, HistoryError

    try:
        return History.open(plan.state_dir), None
    except HistoryError as exc:
        return None, str(exc)


class _Steps:
    """The connections a run's steps use, opened when a step first needs them."""

    def __init__(self, plan: RunPlan, stop: StopRequest, stack: contextlib.ExitStack) -> None:
        self._plan = plan
        self._stop = stop
        self._stack = stack
        self._fleet: Fleet | None = None

    def fleet(self) -> Fleet:
        if self._fleet is None:
            from dcctl.fleet.executor import Fleet

            self._fleet = self._stack.enter_context(Fleet(self._plan.fleet_options, self._stop))
        return self._fleet

    def run(
        self,
        planned: PlannedStep,
        recorder: RunRecorder,
        index: int,
        progress: StepProgress,
    ) -> bool:
        """Run one step; True when it was stopped."""
        on_node: HostProgressCallback | None = (
            progress.node_progress if progress.wants_node_progress else None
        )
        spec = planned.spec
        if isinstance(spec, GangStepSpec):
            from dcctl.fleet.gang import GangRunner

            with GangRunner(self._plan.fleet_options, self._stop) as runner:
                return run_gang_step(
                    spec, planned.hosts, runner, recorder, index, progress.host_done, on_node
                )
        return run_host_step(
            spec, planned.hosts, self.fleet(), recorder, index, progress.host_done, on_node
        )


def _compare(
    recorder: RunRecorder, index: int, hosts: Sequence[Host], history: History | None
) -> None:
    """The step judged across hosts and runs; a comparison that breaks (odd facts, a history
    it cannot read) costs those findings, never the run: it is reported as the history is."""
    try:
        compare_step(recorder, index, hosts, history)
    except Exception as exc:  # the measured results are already kept; only the extras are lost
        recorder.history_failed(RuntimeError(f"comparing step {index + 1} failed: {exc}"))


def run_playbook(
    plan: RunPlan,
    planned: Sequence[PlannedStep],
    stop: StopRequest,
    progress_for: ProgressFor,
) -> RunSaved:
    """Run the planned steps in order and save the run; a stop signal ends it early, with
    everything measured so far kept."""
    history, history_error = _open_history(plan)
    # The file's full path: audits of one playbook are compared whatever the working dir.
    playbook = str(Path(plan.playbook.source).resolve()) if plan.playbook.from_file else None
    meta = new_run_meta(plan.command, plan.inventory_source, playbook)
    sources = {"inventory": plan.inventory_text, "playbook": plan.playbook.text}
    recorder = RunRecorder(meta, plan.state_dir, history, sources)
    if history_error is not None:
        recorder.history_error = history_error
    recorder.expect_hosts([host.name for host in plan.hosts])
    try:
        try:
            interrupted = _run_steps(plan, planned, stop, progress_for, recorder, history)
        except BaseException:
            recorder.finish(interrupted=True)  # what was measured before it broke stays readable
            raise
        return recorder.finish(interrupted)
    finally:
        if history is not None:
            history.close()


def _run_steps(
    plan: RunPlan,
    planned: Sequence[PlannedStep],
    stop: StopRequest,
    progress_for: ProgressFor,
    recorder: RunRecorder,
    history: History | None,
) -> bool:
    """Every step in order, until one with `on_fail: stop` fails or a stop signal comes;
    the steps not run are listed as skipped. True when stopped."""
    with contextlib.ExitStack() as stack:
        steps = _Steps(plan, stop, stack)
        for position, item in enumerate(planned):
            if stop.is_set():
                for rest in planned[position:]:
                    recorder.skip_step(rest.step)
                return True
            index = recorder.begin_step(item.step)
            with progress_for(item.step, len(item.hosts)) as progress:
                stopped = steps.run(item, recorder, index, progress)
            if not stopped:
                _compare(recorder, index, item.hosts, history)
            status = recorder.finish_step(index, stopped)
            if stopped:
                for rest in planned[position + 1 :]:
                    recorder.skip_step(rest.step)
                return True
            if status in ("failed", "error") and item.step.on_fail == "stop":
                for rest in planned[position + 1 :]:
                    recorder.skip_step(rest.step)
                return False
    return False
