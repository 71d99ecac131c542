"""`dcctl run PLAYBOOK`: ordered steps under one run id, one run directory, one run document."""

from __future__ import annotations

from pathlib import Path

import typer

from dcctl.cli.options import global_options, reporting_errors
from dcctl.report.report_files import report_option


def run(
    ctx: typer.Context,
    playbook: Path = typer.Argument(
        ..., help="Playbook YAML: playbooks/check.yaml, playbooks/acceptance.yaml, or your own."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Quick on every step that has it: seconds, not minutes."
    ),
    report_file: Path | None = report_option(),
) -> None:
    """Run a playbook: its steps (check, bench, certify) in order on the selected hosts, each
    with its own thresholds, time limit and on_fail (continue or stop). The whole file is
    checked before anything runs; a problem is one line naming the file and line (exit 2).
    Examples:

      dcctl run playbooks/acceptance.yaml --quick

      dcctl -i rack1.yaml run playbooks/acceptance.yaml

      dcctl -i rack1.yaml --json run playbooks/check.yaml > run.json

      dcctl -i rack1.yaml run playbooks/acceptance.yaml --report acceptance.xml
    """
    from dcctl.cli.step import execute_playbook
    from dcctl.playbook.loader import load_playbook
    from dcctl.playbook.options import with_quick

    with reporting_errors():
        book = load_playbook(str(playbook))
        if quick:
            book = with_quick(book)
        code = execute_playbook(global_options(ctx), book, "run", report=report_file)
    raise typer.Exit(code)
