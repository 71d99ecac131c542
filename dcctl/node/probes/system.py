"""OS, kernel, CPU, memory, swap, uptime, interpreter, mounts and scratch space.

Each `parse_*` function is pure (text in, facts out) and tested from recorded fixtures;
each `collect_*` function reads the host through `sysroot` and calls its parser.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from typing import Any

from dcctl.node.sysroot import read_text, sysroot_path

_KIB_PER_GIB = 1024 * 1024

# Kernel pseudo filesystems: nobody requires them as a mount and they swamp the list.
PSEUDO_FSTYPES = frozenset(
    {
        "binfmt_misc",
        "bpf",
        "cgroup",
        "cgroup2",
        "configfs",
        "debugfs",
        "devpts",
        "efivarfs",
        "fusectl",
        "mqueue",
        "nsfs",
        "proc",
        "pstore",
        "rpc_pipefs",
        "securityfs",
        "selinuxfs",
        "sysfs",
        "tracefs",
    }
)


def parse_os_release(text: str) -> dict[str, str | None]:
    """os-release(5) -> {pretty_name, id, version_id}; absent keys are None."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            words = shlex.split(raw)
        except ValueError:
            words = [raw.strip("\"'")]
        values[key.strip()] = words[0] if words else ""
    return {
        "pretty_name": values.get("PRETTY_NAME"),
        "id": values.get("ID"),
        "version_id": values.get("VERSION_ID"),
    }


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """/proc/cpuinfo -> {model, sockets, cores, threads}."""
    threads = 0
    model: str | None = None
    arm_ids: dict[str, str] = {}
    sockets: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = ""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        threads += 1
        model = model or fields.get("model name")
        for key in ("CPU implementer", "CPU part"):
            if key in fields:
                arm_ids.setdefault(key, fields[key])
        physical_id = fields.get("physical id", "")
        if physical_id:
            sockets.add(physical_id)
        if physical_id and "core id" in fields:
            cores.add((physical_id, fields["core id"]))
    if model is None and arm_ids:
        # Arm kernels (Grace, Ampere) list no model name, only the MIDR ids lscpu decodes.
        model = "Arm implementer {} part {}".format(
            arm_ids.get("CPU implementer", "?"), arm_ids.get("CPU part", "?")
        )
    return {
        "model": model,
        # Without topology fields (Arm, some VMs) assume one socket and no SMT.
        "sockets": len(sockets) or (1 if threads else 0),
        "cores": len(cores) or threads,
        "threads": threads,
    }


def _meminfo_kib(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        words = rest.split()
        if sep and words and words[0].isdigit():
            values[key.strip()] = int(words[0])
    return values


def _gib(kib: int) -> float:
    return round(kib / _KIB_PER_GIB, 1)


def parse_meminfo(text: str) -> dict[str, dict[str, float]]:
    """/proc/meminfo -> {"memory": {total_gb, available_gb}, "swap": {total_gb, used_gb}} in GiB."""
    kib = _meminfo_kib(text)
    available = kib.get("MemAvailable")
    if available is None:
        # Kernels before 3.14 have no MemAvailable; this is the estimate free(1) used then.
        available = kib.get("MemFree", 0) + kib.get("Buffers", 0) + kib.get("Cached", 0)
    swap_total = kib.get("SwapTotal", 0)
    return {
        "memory": {"total_gb": _gib(kib.get("MemTotal", 0)), "available_gb": _gib(available)},
        "swap": {
            "total_gb": _gib(swap_total),
            "used_gb": _gib(swap_total - kib.get("SwapFree", swap_total)),
        },
    }


def parse_uptime(text: str) -> float:
    """/proc/uptime -> seconds since boot."""
    return float(text.split()[0])


def _unescape_mount_field(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in mount fields as octal escapes.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> list[dict[str, Any]]:
    """/proc/mounts -> [{device, mountpoint, fstype, options}], kernel pseudo filesystems left out.

    `options` is the list of mount options ("rw" or "ro" first), so a filesystem the kernel
    remounted read-only after I/O errors shows up.
    """
    mounts: list[dict[str, Any]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or fields[2] in PSEUDO_FSTYPES:
            continue
        mounts.append(
            {
                "device": _unescape_mount_field(fields[0]),
                "mountpoint": _unescape_mount_field(fields[1]),
                "fstype": fields[2],
                "options": fields[3].split(",") if len(fields) > 3 else [],
            }
        )
    return mounts


def nearest_existing(path: str) -> str:
    """`path` itself or its closest ancestor that exists (the filesystem it would live on)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def collect_os() -> dict[str, str | None] | None:
    text = read_text("/etc/os-release")
    if text is None:
        text = read_text("/usr/lib/os-release")
    return None if text is None else parse_os_release(text)


def collect_kernel() -> str | None:
    text = read_text("/proc/sys/kernel/osrelease")
    return None if text is None else text.strip() or None


def collect_cpu() -> dict[str, Any] | None:
    text = read_text("/proc/cpuinfo")
    return None if text is None else parse_cpuinfo(text)


def collect_memory() -> dict[str, Any]:
    text = read_text("/proc/meminfo")
    if text is None:
        return {"memory": None, "swap": None}
    return dict(parse_meminfo(text))


def collect_uptime() -> float | None:
    text = read_text("/proc/uptime")
    return None if text is None else parse_uptime(text)


def collect_python() -> str:
    return platform.python_version()


def collect_mounts() -> list[dict[str, Any]] | None:
    text = read_text("/proc/mounts")
    return None if text is None else parse_mounts(text)


def collect_scratch(scratch_dir: str) -> dict[str, Any]:
    """{path, exists, free_gb}: free GiB where fio would write, even before the dir exists."""
    target = sysroot_path(scratch_dir)
    stats = os.statvfs(nearest_existing(target))
    return {
        "path": scratch_dir,
        "exists": os.path.isdir(target),
        "free_gb": round(stats.f_bavail * stats.f_frsize / 1024**3, 1),
    }
