"""`dcctl check`: OS, kernel, driver, CUDA, GPUs, IB and disks of every host against `expect`."""

from __future__ import annotations

from typing import Any

import typer

from dcctl.cli.options import global_options, reporting_errors
from dcctl.inventory.model import Host


def check(
    ctx: typer.Context,
    timeout: float = typer.Option(
        60.0, "--timeout", min=1.0, help="Seconds each host may take in all, connecting included."
    ),
) -> None:
    """Check every host's OS, kernel, NVIDIA driver, CUDA, GPUs, InfiniBand and mounts.

    Facts with no expectation are reported, not judged. Examples:

      dcctl check

      dcctl -i rack1.yaml -l rack1 check

      dcctl -i rack1.yaml --json check | jq '.hosts[] | select(.status != "passed")'
    """
    from dcctl.cli.step import execute_step
    from dcctl.evaluate.check import evaluate_facts
    from dcctl.playbook.session import StepSpec

    def params_for(host: Host) -> dict[str, Any]:
        return {"scratch_dir": host.scratch_dir}

    def evaluate(host: Host, facts: dict[str, Any]) -> list[Any]:
        return evaluate_facts(facts, host.expect)

    spec = StepSpec(
        command="check", task="facts", params_for=params_for, evaluate=evaluate, timeout_s=timeout
    )
    with reporting_errors():
        code = execute_step(global_options(ctx), spec)
    raise typer.Exit(code)
