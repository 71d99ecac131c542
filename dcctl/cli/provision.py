"""`dcctl provision`: bring every host to what the benchmarks need (a venv with torch and
nvidia-ml-py, fio, persistence mode, the scratch dir), touching only what is missing.

The node task (dcctl/node/provision) does the work and reports each step; this side fans it
out, shows it, and keeps the venv's python per host in the state dir for bench and certify
(dcctl/results/provisioned.py). It is not a run: nothing is judged, so no run document is
saved and the history is not touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import typer

from dcctl.cli.bounds import MAX_TIMEOUT_S, seconds_between
from dcctl.cli.options import GlobalOptions, global_options, reporting_errors
from dcctl.inventory.model import Host

# Installed into the venv beside torch: the benchmarks read NVML through it.
PACKAGES = ("nvidia-ml-py",)
# Where torch's CUDA builds live when the host names no mirror and no wheelhouse.
TORCH_INDEX_BASE = "https://download.pytorch.org/whl"
# torch with its CUDA libraries is gigabytes: a slow mirror needs many minutes.
DEFAULT_TIMEOUT_S = 1800.0


def provision(
    ctx: typer.Context,
    check: bool = typer.Option(
        False, "--check", help="Dry run: show what would change on each host; change nothing."
    ),
    become: bool = typer.Option(
        False,
        "--become",
        help="Run privileged commands (package install, venv under /opt, persistence mode) "
        "with `sudo -n` when not connected as root; a sudo that wants a password is one line.",
    ),
    prune: bool = typer.Option(
        False,
        "--prune",
        help="Also remove old node runtimes dcctl left in the node's ~/.cache/dcctl, those of "
        "other dcctl versions included: run it when no other dcctl is running on the hosts.",
    ),
    timeout: float = typer.Option(
        DEFAULT_TIMEOUT_S,
        "--timeout",
        callback=seconds_between(1.0, MAX_TIMEOUT_S),
        help="Seconds each host may take in all, connecting and downloading torch included "
        f"(waiting for a --forks slot is not counted): 1 to {MAX_TIMEOUT_S}.",
    ),
) -> None:
    """Prepare every host for bench and certify: Python >= 3.9, a venv at `runtime_venv`
    (default /opt/dcctl/venv) with torch for the node's CUDA driver and nvidia-ml-py, fio,
    persistence mode on, and `scratch_dir`. Only what is missing is done, so a second run
    changes nothing; hosts install in parallel within --forks.

    Afterwards bench and certify use the venv's python on each host whose inventory sets no
    `python` (an explicit one always wins). Per-host variables: `runtime_venv`, `torch_spec`,
    `pip_index_url`, `pip_extra_args`, `wheelhouse` (offline), `provision_python` (the
    Python >= 3.9 that makes the venv, when the host's python is older). Examples:

      dcctl -i rack1.yaml provision --check

      dcctl -i rack1.yaml -l rack1 provision --become

      dcctl -i rack1.yaml --json provision --prune > provision.json

    Exit codes: 0 nothing failed, 1 a step failed on some host, 2 usage or input error,
    3 a host could not be reached (and none failed), 4 a record could not be saved in the
    state dir or the output not written, 130/143/129 stopped by a signal.
    """
    options = global_options(ctx)
    with reporting_errors():
        hosts = _selected_hosts(options)
    settings = ProvisionSettings(check=check, become=become, prune=prune, timeout_s=timeout)
    from dcctl.cli.provision_run import run_provision

    raise typer.Exit(run_provision(options, hosts, settings))


@dataclass(frozen=True)
class ProvisionSettings:
    check: bool
    become: bool
    prune: bool
    timeout_s: float


def _selected_hosts(options: GlobalOptions) -> list[Host]:
    """The selected hosts; one whose provision variables hold a template is left out of the
    run as an `inventory` error, as a host unusable for every command is."""
    from dcctl.inventory import load_inventory, select_hosts

    hosts = select_hosts(load_inventory(options.inventory), options.limit)
    return [
        dataclasses.replace(host, unusable=host.unusable or host.provision_unusable)
        for host in hosts
    ]


def task_params(host: Host, settings: ProvisionSettings, keep_runtime: str) -> dict[str, Any]:
    """The node task's parameters for `host` (the contract in dcctl/node/provision)."""
    return {
        "check": settings.check,
        "become": settings.become,
        "venv": host.runtime_venv,
        "torch_spec": host.torch_spec,
        "packages": list(PACKAGES),
        "pip_index_url": host.pip_index_url,
        "pip_extra_args": list(host.pip_extra_args),
        "wheelhouse": host.wheelhouse,
        "torch_index_base": TORCH_INDEX_BASE,
        "scratch_dir": host.scratch_dir,
        "prune": settings.prune,
        "keep_runtime": keep_runtime,
        "python": host.provision_python,
    }


def progress_line(line: Mapping[str, Any]) -> Mapping[str, Any]:
    """The node's `{"step": "packages", "phase": "start"}` as the progress display reads it:
    a label, where a `step` would be taken for a count."""
    step = line.get("step")
    return {"provision": step} if isinstance(step, str) else line
