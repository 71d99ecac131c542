"""Shared by every command that runs a step on hosts: select hosts, run, print, exit code."""

from __future__ import annotations

import os
import sys

from dcctl.cli.options import GlobalOptions
from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import FleetOptions
from dcctl.inventory import load_inventory, select_hosts
from dcctl.playbook.session import StepSpec, run_step
from dcctl.results.document import EXIT_INTERRUPTED, exit_code


def execute_step(options: GlobalOptions, spec: StepSpec) -> int:
    inventory = load_inventory(options.inventory)
    hosts = select_hosts(inventory, options.limit)
    fleet_options = FleetOptions(
        forks=options.forks,
        workers=options.workers,
        connect_timeout_s=options.connect_timeout_s,
        accept_new_host_keys=options.accept_new_host_keys,
        trusted_keys_file=options.state_dir / "known_hosts",
    )
    from dcctl.report.console import print_json, print_run
    from dcctl.report.progress import HostProgress

    with (
        Fleet(fleet_options) as fleet,
        HostProgress(spec.command, len(hosts), enabled=options.show_progress) as progress,
    ):
        step_run = run_step(
            spec, hosts, inventory.source, options.state_dir, fleet, on_progress=progress.host_done
        )
    if options.json:
        print_json(step_run.document)
    else:
        print_run(
            step_run.document,
            str(step_run.run_dir),
            only_problems=options.quiet,
            detail=options.verbose,
        )
    code = exit_code(step_run.document, strict=options.strict)
    if code == EXIT_INTERRUPTED:
        # Everything measured is on disk and printed. Worker threads still unwinding a
        # handshake would hold interpreter exit for up to a connect timeout: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
