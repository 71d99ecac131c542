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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

from dcctl.cli.options import GlobalOptions
from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import FleetOptions
from dcctl.fleet.signals import (
    StopRequest,
    handle_stop_signals,
    ignore_stop_signals,
    stop_signals_deferred,
)
from dcctl.inventory import load_inventory, select_hosts
from dcctl.inventory.model import Host
from dcctl.playbook.session import StepRun, StepSpec, run_step
from dcctl.results.document import exit_code

if TYPE_CHECKING:
    from dcctl.playbook.gang_step import GangStepSpec


def execute_step(options: GlobalOptions, spec: StepSpec) -> int:
    """Run `spec` on the selected hosts, print the run, and return its exit code (a stopped
    run ends the process here, with its own)."""
    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory, options.limit)
    stop = StopRequest()
    handle_stop_signals(stop)  # not restored: _finish() ignores them once the output is out
    step_run = _run(options, spec, hosts, inventory.source, stop)
    return _finish(options, step_run, stop)


def execute_gang_step(
    options: GlobalOptions, spec_for: Callable[[Sequence[Host]], GangStepSpec]
) -> int:
    """As execute_step, for a step whose jobs span the selected hosts (dcctl.fleet.gang).
    `spec_for(hosts)` builds the step once the hosts are known (an injected fault must name
    one of them); an InputError it raises means nothing ran."""
    from dcctl.fleet.gang import GangRunner
    from dcctl.playbook.gang_step import run_gang_step
    from dcctl.report.progress import HostProgress

    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory, options.limit)
    spec = spec_for(hosts)
    stop = StopRequest()
    handle_stop_signals(stop)
    with (
        GangRunner(_fleet_options(options), stop) as runner,
        HostProgress(
            spec.command, len(hosts), enabled=options.show_progress, verbose=options.verbose
        ) as progress,
    ):
        step_run = run_gang_step(
            spec,
            hosts,
            inventory.source,
            options.state_dir,
            runner,
            on_progress=progress.host_done,
            on_node_progress=progress.node_progress if progress.wants_node_progress else None,
        )
    return _finish(options, step_run, stop)


def _fleet_options(options: GlobalOptions) -> FleetOptions:
    return FleetOptions(
        forks=options.forks,
        workers=options.workers,
        connect_timeout_s=options.connect_timeout_s,
        accept_new_host_keys=options.accept_new_host_keys,
        trusted_keys_file=options.state_dir / "known_hosts",
    )


def _run(
    options: GlobalOptions, spec: StepSpec, hosts: Sequence[Host], source: str, stop: StopRequest
) -> StepRun:
    with Fleet(_fleet_options(options), stop) as fleet:
        return run_showing_progress(options, spec, hosts, source, fleet)


def run_showing_progress(
    options: GlobalOptions, spec: StepSpec, hosts: Sequence[Host], source: str, fleet: Fleet
) -> StepRun:
    """The step, with the hosts done and the node tasks' own progress shown as it comes."""
    from dcctl.report.progress import HostProgress

    with HostProgress(
        spec.command, len(hosts), enabled=options.show_progress, verbose=options.verbose
    ) as progress:
        return run_step(
            spec,
            hosts,
            source,
            options.state_dir,
            fleet,
            on_progress=progress.host_done,
            on_node_progress=progress.node_progress if progress.wants_node_progress else None,
        )


def _finish(options: GlobalOptions, step_run: StepRun, stop: StopRequest) -> int:
    """Print the saved run and return its exit code; from here to exit, stop signals are
    ignored: the run is over, and a signal must neither cut the output short nor change the
    code."""
    stopped = step_run.document["status"] == "interrupted"
    with stop_signals_deferred():
        output_ok = _show(options, step_run, stop.reason if stopped else None)
        _report_unsaved(step_run)
        ignore_stop_signals()  # a signal held back meanwhile is dropped with them
    code = exit_code(
        step_run.document,
        strict=options.strict,
        stop_signal=stop.signum,
        saved=step_run.save_error is None and output_ok,
    )
    if stopped:
        _exit_now(code)
    return code


def _exit_now(code: int) -> NoReturn:
    """Everything measured is on disk and printed. Worker threads still unwinding a handshake
    would hold interpreter exit for up to a connect timeout: leave now."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os._exit(code)


def _show(options: GlobalOptions, step_run: StepRun, stopped_by: str | None) -> bool:
    """Print the run; False if the output was lost (not if its reader left: `| head`)."""
    from dcctl.report.console import (
        discard_stdout,
        print_error,
        print_json,
        print_notice,
        print_run,
    )

    run_dir = str(step_run.run_dir) if step_run.run_saved else None
    try:
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
    except BrokenPipeError:
        discard_stdout()  # the reader had what it wanted
    except OSError as exc:
        discard_stdout()
        print_error(f"cannot write the output: {exc.strerror or exc}")
        return False
    return True


def _report_unsaved(step_run: StepRun) -> None:
    """One line: which path could not be written, and what to do about it."""
    from dcctl.report.console import print_error

    error = step_run.save_error
    if error is None:
        return
    if step_run.run_saved:
        what = "run.json holds every result, but not every host file was written"
    else:
        what = "the results are printed but not saved"
    fix = f"{error.remedy}, or use --state-dir DIR" if error.remedy else "use --state-dir DIR"
    print_error(f"{error}; {what} ({fix})")
