"""What the node offers fio: the binary, its version, its I/O engine, and O_DIRECT support.

Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

from dcctl.node.sysroot import read_text

PREFERRED_ENGINE = "libaio"
# psync is built into every fio; libaio is a loadable module on some distributions
# (Fedora's fio-engine-libaio) and absent on macOS.
FALLBACK_ENGINE = "psync"
_PROBE_TIMEOUT_S = 10.0
# os-release ID / ID_LIKE words -> the package manager that installs fio there.
_INSTALLERS = (
    (("debian", "ubuntu"), "apt-get install fio"),
    (("rhel", "fedora", "centos", "rocky", "almalinux", "amzn", "ol"), "dnf install fio"),
    (("suse", "sles", "opensuse", "opensuse-leap", "opensuse-tumbleweed"), "zypper install fio"),
)


def os_release_words(text: str) -> list[str]:
    """The distribution's ID followed by its ID_LIKE words, lower-case."""
    values = {}
    for line in text.splitlines():
        key, sep, raw = line.strip().partition("=")
        if sep:
            values[key.strip()] = raw.strip().strip("\"'").lower()
    return (values.get("ID", "") + " " + values.get("ID_LIKE", "")).split()


def install_command(os_release: str | None) -> str | None:
    """The command that installs fio on the distribution /etc/os-release describes; None for
    one dcctl does not know."""
    for word in os_release_words(os_release or ""):
        for family, command in _INSTALLERS:
            if word in family:
                return command
    return None


def missing_fio_message() -> str:
    command = install_command(read_text("/etc/os-release"))
    if command is None:
        how = "with the system's package manager (apt-get, dnf or zypper install fio)"
    else:
        how = f"with `{command}`"
    return f"fio is not installed (not on PATH): install it {how}"


def find_fio() -> str | None:
    return shutil.which("fio")


def fio_version(fio: str) -> str | None:
    """`fio-3.33`, as fio prints it; None when it would not say."""
    try:
        done = subprocess.run(
            [fio, "--version"], capture_output=True, text=True, timeout=_PROBE_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if done.returncode == 0 and lines else None


def pick_engine(fio: str) -> str:
    """libaio where this fio can load it, else psync.

    `fio --enghelp=libaio` exits 0 only when the engine loads (it prints the engine's options);
    a missing external engine makes it exit 1 with "not loadable".
    """
    try:
        done = subprocess.run(
            [fio, f"--enghelp={PREFERRED_ENGINE}"], capture_output=True,
            timeout=_PROBE_TIMEOUT_S, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return FALLBACK_ENGINE
    return PREFERRED_ENGINE if done.returncode == 0 else FALLBACK_ENGINE


def direct_io_refused(directory: str) -> bool:
    """Whether the filesystem of `directory` refuses O_DIRECT (open fails with EINVAL).

    tmpfs before Linux 6.6, ramfs, hugetlbfs and some FUSE filesystems refuse it. Where the
    platform has no O_DIRECT (macOS: fio uses F_NOCACHE instead) fio is left to decide.
    """
    flag = getattr(os, "O_DIRECT", None)
    if flag is None:
        return False
    probe = os.path.join(directory, ".dcctl-direct-probe")
    try:
        handle = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | flag, 0o600)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        # The kernel creates the file before it checks O_DIRECT, so EINVAL can leave it there.
        if os.path.lexists(probe):
            os.unlink(probe)
        return True
    os.close(handle)
    os.unlink(probe)
    return False
