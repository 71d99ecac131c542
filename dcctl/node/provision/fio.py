"""The `fio` step: fio on PATH, else installed with the node's package manager."""

from __future__ import annotations

import shutil
from typing import Any

from dcctl.node.provision.commands import run_command
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.result import step

INSTALL_TIMEOUT_S = 900.0
# Detection order: a node with dnf often keeps a yum shim that only forwards to it.
INSTALL_ARGV: dict[str, list[str]] = {
    "apt-get": ["apt-get", "install", "-y", "fio"],
    "dnf": ["dnf", "install", "-y", "fio"],
    "yum": ["yum", "install", "-y", "fio"],
    "zypper": ["zypper", "--non-interactive", "install", "fio"],
}
UPDATE_TIMEOUT_S = 600.0
# A fresh cloud image ships without apt's package lists: the first install finds nothing.
APT_NO_LISTS = "Unable to locate package"
# debconf must not ask; through sudo it goes as sudo's VAR=value argument (sudo resets env).
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


def package_manager() -> str | None:
    """The first of apt-get, dnf, yum, zypper on PATH."""
    for name in INSTALL_ARGV:
        if shutil.which(name):
            return name
    return None


def install_argv(manager: str, privilege: Privilege, argv: list[str] | None = None) -> list[str]:
    argv = INSTALL_ARGV[manager] if argv is None else argv
    if privilege.root:
        return list(argv)
    env = [f"{key}={value}" for key, value in APT_ENV.items()] if manager == "apt-get" else []
    return privilege.argv([*env, *argv])


def fio_step(manager: str | None, privilege: Privilege, check: bool) -> dict[str, Any]:
    found = shutil.which("fio")
    if found:
        return step("fio", "ok", f"fio at {found}")
    if manager is None:
        return step(
            "fio",
            "failed",
            "fio is not installed and no package manager was found "
            f"({', '.join(INSTALL_ARGV)}): install fio on this host",
        )
    argv = install_argv(manager, privilege)
    if not privilege.usable:
        return privilege.refused("fio", "installing fio", [argv])
    if check:
        return step("fio", "changed", f"would install fio with {manager}", [argv])
    env = APT_ENV if manager == "apt-get" and privilege.root else None
    commands = [argv]
    outcome = run_command(argv, INSTALL_TIMEOUT_S, env=env)
    if not outcome.ok and manager == "apt-get" and APT_NO_LISTS in outcome.why():
        update = install_argv(manager, privilege, ["apt-get", "update"])
        commands.append(update)
        outcome = run_command(update, UPDATE_TIMEOUT_S, env=env)
        if outcome.ok:  # a failed update is the reason given; the install is not retried
            commands.append(argv)
            outcome = run_command(argv, INSTALL_TIMEOUT_S, env=env)
    if not outcome.ok:
        why = outcome.why()
        return step("fio", "failed", f"{manager} could not install fio: {why}", commands)
    if not shutil.which("fio"):
        return step("fio", "failed", f"{manager} installed fio but it is not on PATH", commands)
    return step("fio", "changed", f"installed fio with {manager}", commands)
