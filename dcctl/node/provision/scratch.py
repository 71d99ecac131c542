"""The `scratch` step: scratch_dir is a real directory only this user (or root) can write.

The rules are fio's (dcctl.node.bench.fio_scratch: never under /dev, never anything but a
directory) plus two of its own: not a symlink, which someone could point elsewhere between
runs, and not writable by others unless sticky, so nobody can swap fio's files underneath it.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from dcctl.node.bench.fio_scratch import ScratchRefused, refuse_unsafe
from dcctl.node.provision.commands import run_command
from dcctl.node.provision.paths import can_create
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.result import step

CREATE_TIMEOUT_S = 60.0
MODE = 0o700


def unsafe_reason(path: str, euid: int) -> str | None:
    """Why an existing scratch_dir must not be used as it is; None when it is fine."""
    if os.path.islink(path):
        return (
            f"scratch_dir {path} is a symlink (to {os.readlink(path)}): "
            "point scratch_dir at a real directory"
        )
    try:
        refuse_unsafe(path)
    except ScratchRefused as exc:
        return str(exc)
    found = os.stat(path)
    if found.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not found.st_mode & stat.S_ISVTX:
        return (
            f"scratch_dir {path} (mode {stat.S_IMODE(found.st_mode):o}) is writable by other "
            "users without the sticky bit: chmod it go-w or +t"
        )
    if euid != 0 and not os.access(path, os.W_OK | os.X_OK):
        return f"scratch_dir {path} is not writable by this user (owner uid {found.st_uid})"
    return None


def _create(path: str) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    os.mkdir(path, MODE)
    os.chmod(path, MODE)  # mkdir's mode passes through the umask, which may take bits away


def scratch_step(path: str, privilege: Privilege, check: bool) -> dict[str, Any]:
    if os.path.lexists(path):
        reason = unsafe_reason(path, privilege.euid)
        if reason is not None:
            return step("scratch", "failed", reason)
        return step("scratch", "ok", f"scratch_dir {path} is a private directory")
    if can_create(path):
        # Made in this process: no command to list, in a check or not.
        if check:
            return step("scratch", "changed", f"would create {path} (mode {MODE:o})")
        try:
            _create(path)
        except OSError as exc:
            return step("scratch", "failed", f"cannot create {path}: {exc}")
        return step("scratch", "changed", f"created {path} (mode {MODE:o})")
    # Made by root but owned by the user who runs the benchmarks, or fio could not write there.
    argv = privilege.argv(
        [
            "install",
            "-d",
            "-m",
            f"{MODE:o}",
            "-o",
            str(privilege.euid),
            "-g",
            str(os.getegid()),
            path,
        ]
    )
    if not privilege.usable:
        return privilege.refused("scratch", f"creating {path}", [argv])
    if check:
        return step("scratch", "changed", f"would create {path} (mode {MODE:o})", [argv])
    outcome = run_command(argv, CREATE_TIMEOUT_S)
    if not outcome.ok:
        return step("scratch", "failed", f"cannot create {path}: {outcome.why()}", [argv])
    return step("scratch", "changed", f"created {path} (mode {MODE:o})", [argv])
