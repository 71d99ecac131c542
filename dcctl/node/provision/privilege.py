"""Who runs the commands: root, or a user with `sudo -n` (--become), or a user without it.

The effective uid comes in from the task (tests pass one), never read here, so a test can be
a non-root user with a fake sudo on PATH while the test itself runs as root.
"""

from __future__ import annotations

import pwd
from collections.abc import Sequence
from typing import Any, NamedTuple

from dcctl.node.provision.commands import run_command
from dcctl.node.provision.result import step

SUDO = ["sudo", "-n"]
SUDO_TIMEOUT_S = 30.0
SUDO_FAILED = "needs root: sudo failed"


class Privilege(NamedTuple):
    euid: int
    user: str
    become: bool
    sudo_failed: bool = False

    @property
    def root(self) -> bool:
        return self.euid == 0

    @property
    def usable(self) -> bool:
        """Whether a command that needs root can run at all."""
        return self.root or (self.become and not self.sudo_failed)

    def argv(self, argv: Sequence[str]) -> list[str]:
        """argv as root: itself for root, behind `sudo -n` for a user with --become."""
        return list(argv) if self.root else [*SUDO, *argv]

    def refused(self, name: str, what: str, commands: list[list[str]]) -> dict[str, Any]:
        """The step entry when `what` needs root and it cannot be had."""
        if self.become:
            # The sudo step already failed and said why; every later one only points to it.
            return step(name, "skipped", SUDO_FAILED, commands)
        return step(
            name,
            "failed",
            f"{what} needs root and user {self.user} is not root: "
            "run with --become (sudo -n) or connect as root",
            commands,
        )


def user_name(euid: int) -> str:
    try:
        return pwd.getpwuid(euid).pw_name
    except KeyError:  # a uid without a passwd entry (containers): its number names it
        return str(euid)


def sudo_step(privilege: Privilege) -> tuple[dict[str, Any], Privilege]:
    """`sudo -n true`: whether privileged steps can run; the privilege they then use."""
    argv = [*SUDO, "true"]
    outcome = run_command(argv, SUDO_TIMEOUT_S)
    if outcome.ok:
        entry = step("sudo", "ok", f"sudo -n works for user {privilege.user}", [argv])
        return entry, privilege
    if outcome.error is None and "password" in outcome.why().lower():
        message = (
            f"sudo wants a password for user {privilege.user} on this host: "
            "allow NOPASSWD for dcctl's commands or connect as root"
        )
    else:
        message = f"sudo -n true failed for user {privilege.user}: {outcome.why()}"
    return step("sudo", "failed", message, [argv]), privilege._replace(sudo_failed=True)
