"""`dcctl provision` once the hosts are chosen: the node task on every host within --forks,
live progress, each host's record kept or dropped as it lands, then the table or JSON.

Stop signals behave as for the other commands (cli/step.py): from here on a signal only asks
the fan-out to stop; what landed is shown and recorded, and the exit code names the signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dcctl.cli.options import GlobalOptions
from dcctl.cli.provision import ProvisionSettings, progress_line, task_params
from dcctl.cli.step import exit_now, fleet_options
from dcctl.evaluate.provision import (
    HostProvision,
    Tally,
    host_provision,
    provision_exit_code,
    tally,
)
from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import HostOutcome
from dcctl.fleet.runtime import build_runtime
from dcctl.fleet.signals import (
    StopRequest,
    handle_stop_signals,
    ignore_stop_signals,
    stop_signals_deferred,
)
from dcctl.inventory.model import Host
from dcctl.results.document import stopped_exit_code
from dcctl.results.provisioned import new_record, remove_record, write_record

TASK = "provision"


class _Records:
    """Each host's venv python kept in the state dir as it lands (non-check runs only): a
    venv with its packages in place is recorded; a venv not usable after the run (the node's
    venv_python is null) forgotten; a venv that works but whose packages could not be
    installed or checked (a mirror outage) keeps its record, so bench does not silently go
    back to the host's python3; an unreachable host is left as it was."""

    def __init__(self, state_dir: Path, enabled: bool) -> None:
        self._state_dir = state_dir
        self._enabled = enabled
        self.errors: list[str] = []

    def keep(self, host: Host, result: HostProvision) -> None:
        if not self._enabled or result.error is not None:
            return
        try:
            if result.venv_usable and result.venv_python is not None:
                write_record(self._state_dir, host.name, new_record(host, result.venv_python))
            elif result.venv_python is None:
                remove_record(self._state_dir, host.name)
        except OSError as exc:
            where = exc.filename or self._state_dir
            self.errors.append(
                f"cannot record the provisioned python of {host.name} in {where}: "
                f"{exc.strerror or exc} (make the state dir writable, or use --state-dir DIR)"
            )


def run_provision(
    options: GlobalOptions, hosts: Sequence[Host], settings: ProvisionSettings
) -> int:
    """Provision `hosts`; the exit code (a stopped run exits here, with its own)."""
    stop = StopRequest()
    handle_stop_signals(stop)  # not restored: ignored once the output is out
    records = _Records(options.state_dir, enabled=not settings.check)
    results = _fan_out(options, hosts, settings, stop, records)
    order = {host.name: index for index, host in enumerate(hosts)}
    results.sort(key=lambda result: order[result.name])
    counts = tally(results)
    with stop_signals_deferred():
        output_ok = _show(options, results, counts, settings.check, stop)
        _report_record_errors(records.errors)
        ignore_stop_signals()
    if stop.is_set():
        exit_now(stopped_exit_code(stop.signum))
    return provision_exit_code(counts, saved=output_ok and not records.errors)


def _fan_out(
    options: GlobalOptions,
    hosts: Sequence[Host],
    settings: ProvisionSettings,
    stop: StopRequest,
    records: _Records,
) -> list[HostProvision]:
    from dcctl.report.progress import HostProgress
    from dcctl.report.provision_table import status_word

    keep_runtime = build_runtime().digest
    results: list[HostProvision] = []
    title = "provision --check" if settings.check else "provision"
    with (
        Fleet(fleet_options(options), stop) as fleet,
        HostProgress(title, len(hosts), options.show_progress, options.verbose) as progress,
    ):

        def landed(outcome: HostOutcome) -> None:
            result = host_provision(outcome)
            records.keep(outcome.host, result)
            results.append(result)
            progress.host_done(result.name, status_word(result.status, settings.check))

        def on_node(host_name: str, line: Mapping[str, Any]) -> None:
            progress.node_progress(host_name, progress_line(line))

        fleet.run(
            hosts,
            TASK,
            lambda host: task_params(host, settings, keep_runtime),
            settings.timeout_s,
            landed,
            on_node if progress.wants_node_progress else None,
        )
    return results


def _show(
    options: GlobalOptions,
    results: Sequence[HostProvision],
    counts: Tally,
    check: bool,
    stop: StopRequest,
) -> bool:
    """The table or the JSON document; False if the output was lost."""
    from dcctl.report.console import print_json, print_notice, written
    from dcctl.report.provision_table import print_provision

    stopped_by = stop.reason if stop.is_set() else None

    def show() -> None:
        if options.json:
            print_json(_json_document(results, counts, check, stopped_by))
        else:
            print_provision(results, counts, check, options.quiet, options.verbose)
        if stopped_by is not None:
            print_notice(f"interrupted by {stopped_by}; hosts not finished are listed as errors")

    return written(show)


def _json_document(
    results: Sequence[HostProvision], counts: Tally, check: bool, stopped_by: str | None
) -> dict[str, Any]:
    return {
        "command": TASK,
        "check": check,
        "stopped_by": stopped_by,
        "summary": counts.as_json(),
        "hosts": [result.as_json() for result in results],
    }


def _report_record_errors(errors: Sequence[str]) -> None:
    from dcctl.report.console import print_error

    # One state dir: its first error says why; a thousand copies would say nothing more.
    if errors:
        more = f" (and {len(errors) - 1} more host(s))" if len(errors) > 1 else ""
        print_error(errors[0] + more)
