"""Where the node's files are: every absolute path a probe reads goes through here.

`DCCTL_SYSROOT` re-roots them (like node_exporter's --path.procfs) so tests can hand the
runtime a recorded /proc and /sys tree.
"""

from __future__ import annotations

import os

SYSROOT_ENV = "DCCTL_SYSROOT"


def active_sysroot() -> str | None:
    """The re-rooting directory, or None when probes read the live host."""
    # Read on every call, not cached at import, so tests and callers can switch it.
    root = os.environ.get(SYSROOT_ENV, "")
    return root or None


def sysroot_path(path: str) -> str:
    """`path` under DCCTL_SYSROOT when set; relative paths are left alone."""
    root = active_sysroot()
    if root is None or not os.path.isabs(path):
        return path
    return os.path.join(root, path.lstrip("/"))


def read_text(path: str) -> str | None:
    """The file's text, or None when it does not exist (a missing file is a fact, not an error)."""
    try:
        with open(sysroot_path(path), encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None


RECORDED_DIR = "/dcctl-recorded"


def recorded_output(name: str) -> str | None:
    """Under DCCTL_SYSROOT, a command's or library's recorded output instead of running it.

    Probes that run a program (dmesg, systemctl, dcgmi) or call a library (NVML) read
    `<sysroot>/dcctl-recorded/<name>` when a sysroot is active, so a recorded node is judged
    end to end. Returns None on the live host, or when nothing was recorded under that name.
    """
    if active_sysroot() is None:
        return None
    return read_text(f"{RECORDED_DIR}/{name}")
