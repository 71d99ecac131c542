"""`dcctl check`: OS, kernel, driver, CUDA, GPU health, kernel log, IB and disks of every host."""

from __future__ import annotations

from pathlib import Path

import typer

from dcctl.cli.bounds import MAX_TIMEOUT_S, seconds_between
from dcctl.cli.options import global_options, reporting_errors
from dcctl.report.report_files import report_option


def check(
    ctx: typer.Context,
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        callback=seconds_between(1.0, MAX_TIMEOUT_S),
        help="Seconds each host may take in all, connecting included (waiting for a --forks "
        f"slot is not counted): 1 to {MAX_TIMEOUT_S}.",
    ),
    dcgm: int | None = typer.Option(
        None,
        "--dcgm",
        min=1,
        max=3,
        help="Also run `dcgmi diag -r N` on every host (1: seconds, 2: ~2 min, 3: ~15 min); "
        "the host's time limit grows to match.",
        show_default=False,
    ),
    report_file: Path | None = report_option(),
) -> None:
    """Check every host's OS, kernel, NVIDIA driver, CUDA, GPU health (ECC, row remaps, PCIe,
    clocks, NVLink, fabric), kernel log XIDs, InfiniBand ports and mounts.

    Health checks use built-in thresholds, overridable under `expect`; other facts are judged
    only where the inventory sets an expectation. Examples:

      dcctl check

      dcctl -i rack1.yaml -l rack1 check

      dcctl -i rack1.yaml check --dcgm 1

      dcctl -i rack1.yaml --json check | jq '.hosts[] | select(.status != "passed")'
    """
    from dcctl.cli.step import execute_playbook
    from dcctl.playbook.model import one_step

    playbook = one_step("check", {"dcgm": dcgm}, timeout)
    with reporting_errors():
        code = execute_playbook(global_options(ctx), playbook, "check", report=report_file)
    raise typer.Exit(code)
