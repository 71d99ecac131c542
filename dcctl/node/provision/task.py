"""The `provision` node task: every step in order, one payload with what each found or did.

`python -S runtime provision '{"venv": "/opt/dcctl/venv", "check": true, ...}'` (the keys are
in dcctl.node.provision.params). A failing step does not stop the ones after it that do not
depend on it; a check (dry run) runs only commands that change nothing.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from dcctl.node.payload import format_progress
from dcctl.node.provision.fio import fio_step, package_manager
from dcctl.node.provision.packages import packages_step
from dcctl.node.provision.params import parse_params
from dcctl.node.provision.persistence import persistence_step
from dcctl.node.provision.privilege import Privilege, sudo_step, user_name
from dcctl.node.provision.prune import prune_step
from dcctl.node.provision.python import find_maker, python_step
from dcctl.node.provision.scratch import scratch_step
from dcctl.node.provision.torch_build import BuildChoice, choose_build, read_driver_cuda
from dcctl.node.provision.venv import inspect_venv, venv_step

if TYPE_CHECKING:
    from collections.abc import Callable

    # Only for the checker: subscripted generics do not exist at runtime on Python 3.8.
    Progress = Callable[[dict[str, Any]], None]
    DriverReader = Callable[[], tuple[bool, str | None]]


def _print_progress(update: dict[str, Any]) -> None:
    sys.stdout.write(format_progress(update))
    sys.stdout.flush()


def provision_task(
    raw: dict[str, Any],
    euid: int | None = None,
    progress: Progress = _print_progress,
    read_driver: DriverReader = read_driver_cuda,
) -> dict[str, Any]:
    """Run the steps; `euid`, `progress` and `read_driver` are the node's unless a test's."""
    params = parse_params(raw)
    uid = os.geteuid() if euid is None else euid
    privilege = Privilege(uid, user_name(uid), params.become)
    steps: list[dict[str, Any]] = []

    def begin(name: str) -> None:
        progress({"step": name, "phase": "start"})

    begin("python")
    # A venv that is there and works needs no maker: an old host python does not matter.
    found = inspect_venv(params.venv)
    maker = None if found.works else find_maker(params.python)
    steps.append(python_step(maker, found.describe() if found.works else None))
    if params.become and not privilege.root:
        begin("sudo")
        entry, privilege = sudo_step(privilege)
        steps.append(entry)
    begin("venv")
    venv_entry, venv = venv_step(params, privilege, found, maker)
    steps.append(venv_entry)
    begin("packages")
    driver_loaded, cuda = read_driver()
    uses_build = params.wheelhouse is None and params.pip_index_url is None
    choice = choose_build(driver_loaded, cuda) if uses_build else BuildChoice(None, "")
    steps.append(packages_step(params, venv, choice, privilege))
    begin("fio")
    manager = package_manager()
    steps.append(fio_step(manager, privilege, params.check))
    begin("persistence")
    steps.append(persistence_step(privilege, params.check))
    begin("scratch")
    steps.append(scratch_step(params.scratch_dir, privilege, params.check))
    if params.prune:
        begin("prune")
        steps.append(prune_step(params.keep_runtime, params.check))
    return {
        "steps": steps,
        "venv_python": venv.python if venv.usable else None,
        "cuda_driver": cuda,
        "torch_build": choice.build,
        "package_manager": manager,
        "check": params.check,
    }
