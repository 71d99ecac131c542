"""`dcctl certify`: a reference MLP trained with DDP on every GPU of the selected nodes, and
a verdict a vendor and a customer can both read."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from dcctl.cli.bounds import (
    MAX_TIMEOUT_S,
    seconds_between,
)
from dcctl.cli.gang_options import join_timeout_option, nproc_per_node_option, port_option
from dcctl.cli.options import global_options, reporting_errors
from dcctl.errors import InputError
from dcctl.inventory.model import Host
from dcctl.report.report_files import report_option

MAX_STEPS = 1_000_000


def read_fault(hosts: Sequence[Host]) -> dict[str, Any] | None:
    """The fault DCCTL_FAULT asks for (dcctl.node.bench.faults), or None; a bad spec, or a
    host fault naming no selected host, is a usage error (exit 2)."""
    from dcctl.node.bench.faults import FAULT_ENV, BadFault, parse_fault

    text = os.environ.get(FAULT_ENV)
    if not text:
        return None
    try:
        fault = parse_fault(text)
    except BadFault as exc:
        raise InputError(str(exc)) from None
    if fault.get("host") is not None and fault["host"] not in {host.name for host in hosts}:
        raise InputError(f"{FAULT_ENV}: host {fault['host']!r} is not among the selected hosts")
    return fault


def certify(
    ctx: typer.Context,
    quick: bool = typer.Option(
        False, "--quick", help="A short run: fewer steps (and a small model on CPUs)."
    ),
    steps: int | None = typer.Option(
        None,
        "--steps",
        min=1,
        max=MAX_STEPS,
        help="Training steps (default: by device and --quick).",
        show_default=False,
    ),
    nproc_per_node: int | None = nproc_per_node_option(),
    port: int | None = port_option(),
    join_timeout: float = join_timeout_option(),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        callback=lambda v: v if v is None else seconds_between(1.0, MAX_TIMEOUT_S)(v),
        help="Seconds the job may run on the nodes (default: 300 with --quick, else 1800).",
        show_default=False,
    ),
    report_file: Path | None = report_option(),
) -> None:
    """Train a reference MLP with DistributedDataParallel on every GPU of the selected nodes
    and certify the cluster.

    Every rank builds the same synthetic teacher-student task from a seed (no downloads) and
    trains for fixed steps. Certified only when the loss reaches its target, the parameters
    of every replica agree bitwise at every checkpoint, a replay of the first steps reproduces
    the losses bitwise, no rank is a straggler, and throughput meets the GPU model's
    expectation (certify_min_mfu, certify_min_samples_per_s in `expect`). One job spans all
    selected nodes: the first node's fabric_address is the rendezvous. Faults can be injected
    to prove the checks (DCCTL_FAULT, see README). Examples:

      dcctl certify --quick

      dcctl -i rack1.yaml -l rack1 certify

      dcctl -i rack1.yaml --json certify --steps 1000 > certificate.json

      DCCTL_FAULT=bitflip:rank=1,step=20 dcctl -i lab.yaml certify --quick
    """
    from dcctl.cli.step import execute_playbook
    from dcctl.playbook.model import one_step

    options = {
        "quick": quick,
        "steps": steps,
        "nproc_per_node": nproc_per_node,
        "port": port,
        "join_timeout": join_timeout,
    }
    with reporting_errors():
        book = one_step("certify", options, timeout)
        code = execute_playbook(global_options(ctx), book, "certify", report=report_file)
    raise typer.Exit(code)
