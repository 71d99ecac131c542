"""Shared by every command that runs a step on hosts: select hosts, run, print, exit code.

Until the hosts are selected nothing has run, and a stop signal (SIGINT, SIGTERM, SIGHUP) ends
the process at once with 128 + its number, as at start-up (main.run): no run is saved and
nothing is printed, and a read that would block for ever (an inventory on a FIFO nobody writes,
a hung mount) is broken off. From then until the output is written, a stop signal only notes
that the run must stop: the step winds down on it (or, if it has not begun, starts none of its
hosts), the partial run is saved and printed, and the exit code names the signal. Nothing
half-written (a host's file, run.json, the output) is cut short. Once the output is written
the stop signals are ignored until the process exits: a run that is over and shown keeps its
exit code.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from dcctl.cli.options import GlobalOptions
from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.signals import (
    StopRequest,
    handle_stop_signals,
    ignore_stop_signals,
    stop_signals_deferred,
)
from dcctl.inventory import load_inventory, select_hosts
from dcctl.playbook.model import Playbook, PlaybookStep
from dcctl.playbook.recorder import RunSaved
from dcctl.playbook.runner import ProgressFor, RunPlan, plan_steps, run_playbook
from dcctl.results.document import exit_code


@dataclass(frozen=True)
class Execution:
    """A run that happened: what it saved, and the stop signal that ended it, if one did."""

    saved: RunSaved
    stop: StopRequest

    @property
    def stopped(self) -> bool:
        return bool(self.saved.document["status"] == "interrupted")


def execute_playbook(
    options: GlobalOptions, playbook: Playbook, command: str, report: Path | None = None
) -> int:
    """Run `playbook` on the selected hosts, print the run (and write it to `report`, as
    JUnit, Markdown or JSON by its extension), and return its exit code (a stopped run ends
    the process here, with its own)."""
    return finish(options, execute(options, playbook, command), report=report)


def execute(options: GlobalOptions, playbook: Playbook, command: str) -> Execution:
    """Select the hosts, build every step (an InputError here means nothing ran), and run.

    From the moment the steps are built, a stop signal only asks the run to stop."""
    from dcctl.cli.step_specs import build_step

    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory, options.limit)
    plan = RunPlan(
        playbook=playbook,
        command=command,
        hosts=hosts,
        inventory_source=inventory.source,
        inventory_text=inventory.text,
        state_dir=options.state_dir,
        fleet_options=fleet_options(options),
        history=options.history,
    )
    planned = plan_steps(plan, build_step)
    stop = StopRequest()
    handle_stop_signals(stop)  # not restored: finish() ignores them once the output is out
    saved = run_playbook(plan, planned, stop, progress_for(options))
    return Execution(saved, stop)


def progress_for(options: GlobalOptions) -> ProgressFor:
    """What each step shows while it runs, as the options ask."""

    def progress(step: PlaybookStep, total: int) -> contextlib.AbstractContextManager[Any]:
        from dcctl.report.progress import HostProgress

        return HostProgress(
            step.name, total, enabled=options.show_progress, verbose=options.verbose
        )

    return progress


def fleet_options(options: GlobalOptions) -> FleetOptions:
    return FleetOptions(
        forks=options.forks,
        workers=options.workers,
        connect_timeout_s=options.connect_timeout_s,
        accept_new_host_keys=options.accept_new_host_keys,
        trusted_keys_file=options.state_dir / "known_hosts",
    )


def finish(
    options: GlobalOptions,
    execution: Execution,
    show: Callable[[], bool] | None = None,
    report: Path | None = None,
) -> int:
    """Print the saved run (or what `show` prints instead; False: the output was lost) and
    return its exit code; from here to exit, stop signals are ignored: the run is over, and a
    signal must neither cut the output short nor change the code. A stopped run exits here."""
    saved, stop = execution.saved, execution.stop
    with stop_signals_deferred():
        if show is None:
            output_ok = _show(options, saved, stop.reason if execution.stopped else None)
        else:
            output_ok = show()
        report_ok = _write_report(saved, report)
        _report_unsaved(saved)
        ignore_stop_signals()  # a signal held back meanwhile is dropped with them
    code = exit_code(
        saved.document,
        strict=options.strict,
        stop_signal=stop.signum,
        saved=saved.save_error is None and saved.history_error is None and output_ok and report_ok,
    )
    if execution.stopped:
        exit_now(code)
    return code


def _write_report(step_run: RunSaved, report: Path | None) -> bool:
    """--report FILE: the run, partial or whole, as JUnit, Markdown or JSON; False after one
    error line."""
    if report is None:
        return True
    from dcctl.report.report_files import save_report

    return save_report(step_run.document, report, run_dir=step_run.run_dir)


def exit_now(code: int) -> NoReturn:
    """Everything measured is on disk and printed. Worker threads still unwinding a handshake
    would hold interpreter exit for up to a connect timeout: leave now."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os._exit(code)


def _show(options: GlobalOptions, step_run: RunSaved, stopped_by: str | None) -> bool:
    """Print the run; False if the output was lost (not if its reader left: `| head`)."""
    from dcctl.report.console import print_json, print_notice, print_run, written

    run_dir = str(step_run.run_dir) if step_run.run_saved else None

    def show() -> None:
        if options.json:
            print_json(step_run.document)
            if stopped_by is not None:
                where = f"; the partial run is in {run_dir}" if run_dir else ""
                print_notice(f"interrupted by {stopped_by}{where}")
        else:
            print_run(
                step_run.document,
                run_dir,
                only_problems=options.quiet,
                detail=options.verbose,
                stopped_by=stopped_by,
            )

    return written(show)


def _report_unsaved(step_run: RunSaved) -> None:
    """One line each: which path could not be written, and what to do about it."""
    from dcctl.report.console import print_error

    error = step_run.save_error
    if error is None:
        if step_run.history_error is not None:
            print_error(
                f"history not kept: {step_run.history_error} (the run's files are in "
                f"{step_run.run_dir}; fix the state dir, or use --no-history)"
            )
        return
    # The history lives in the same state dir: the line about the dir says it for both.
    if step_run.run_saved:
        what = "run.json holds every result, but not every host file was written"
    else:
        what = "the results are printed but not saved"
    fix = f"{error.remedy}, or use --state-dir DIR" if error.remedy else "use --state-dir DIR"
    print_error(f"{error}; {what} ({fix})")
