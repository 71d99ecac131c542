"""Software whose versions should match across a fleet: the OFED (MLNX_OFED / DOCA) driver
stack, NCCL and the HCAs' firmware.

A rack where one node runs other firmware or another NCCL is slow or hangs in ways a single
node's check never shows; the controller compares these values across hosts of one GPU model
(dcctl.evaluate.fleet_compare). Each value is read the cheapest way there is, from a few fixed
places, and a value that cannot be read is None (or {} for firmware): never an error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from typing import TypedDict, TypeVar

from dcctl.node.probes.ib import list_sorted
from dcctl.node.probes.software import site_package_dirs
from dcctl.node.sysroot import active_sysroot, read_text, recorded_output, sysroot_path

MLX5_VERSION_PATH = "/sys/module/mlx5_core/version"
KERNEL_RELEASE_PATH = "/proc/sys/kernel/osrelease"
IB_CLASS_DIR = "/sys/class/infiniband"
RECORDED_OFED_INFO = "ofed_info-s.txt"
OFED_INFO_TIMEOUT_S = 2.0
# Where distributions and NVIDIA's packages put libnccl.so.X.Y.Z. Listed, not searched: a
# walk of /usr would cost the check seconds on every node.
NCCL_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/sbsa-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/nccl/lib",
    "/usr/local/cuda/lib64",
)

_OFED_VERSION_RE = re.compile(r"(\d+\.\d+-\d+(?:\.\d+)*)")
_NCCL_LIB_RE = re.compile(r"^libnccl\.so\.(\d+\.\d+\.\d+)$")
# The wheel torch depends on (nvidia-nccl-cu12) ships only libnccl.so.2; its version is in the
# name of its dist-info directory.
_NCCL_WHEEL_RE = re.compile(r"^nvidia_nccl_cu\d+-(\d+\.\d+\.\d+[^-]*)\.dist-info$")


_T = TypeVar("_T")


class Versions(TypedDict):
    """facts["versions"]: what the drift check compares across hosts."""

    ofed: str | None
    nccl: str | None
    hca_firmware: dict[str, str]


def parse_ofed_version(text: str) -> str | None:
    """The OFED release in `ofed_info -s` output ("MLNX_OFED_LINUX-23.07-0.5.1.2:",
    "OFED-internal-24.07-0.3.5.0.110:"), in the first line of plain `ofed_info`, or in
    /sys/module/mlx5_core/version ("5.8-4.1.5"); None when it holds none."""
    lines = text.strip().splitlines()
    match = _OFED_VERSION_RE.search(lines[0]) if lines else None
    return match.group(1) if match else None


def parse_module_version(text: str | None, kernel_release: str | None) -> str | None:
    """mlx5_core's version file -> the OFED release it came from; None for the kernel's own
    driver, which reports the kernel release there (or no version at all)."""
    if text is None:
        return None
    value = text.strip()
    if not value or value == (kernel_release or "").strip():
        return None
    return parse_ofed_version(value)


def parse_nccl_names(names: list[str]) -> str | None:
    """The NCCL version in a directory listing: a `libnccl.so.2.18.3` or an
    `nvidia_nccl_cu12-2.21.5.dist-info`; the highest when there are several."""
    found = []
    for name in names:
        match = _NCCL_LIB_RE.match(name) or _NCCL_WHEEL_RE.match(name)
        if match is not None:
            found.append(match.group(1))
    return max(found, key=_version_key) if found else None


def _version_key(version: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", version)]


def parse_fw_ver(text: str | None) -> str | None:
    """/sys/class/infiniband/<dev>/fw_ver ("28.41.1000\\n") -> "28.41.1000"."""
    if text is None:
        return None
    value = text.strip()
    return value or None


def collect_ofed() -> str | None:
    """The OFED release that is loaded; `ofed_info -s` only when mlx5_core reports nothing
    (not loaded): it names what is installed, which lags what runs until a reboot."""
    module = read_text(MLX5_VERSION_PATH)
    if module is not None:
        return parse_module_version(module, read_text(KERNEL_RELEASE_PATH))
    text = _ofed_info()
    return parse_ofed_version(text) if text is not None else None


def _ofed_info() -> str | None:
    if active_sysroot() is not None:
        return recorded_output(RECORDED_OFED_INFO)
    path = shutil.which("ofed_info")
    if path is None:
        return None
    try:
        proc = subprocess.run(
            [path, "-s"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            errors="replace",
            timeout=OFED_INFO_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError):  # a broken install: no version to report
        return None
    return proc.stdout


def collect_nccl(
    wheel_dirs: list[str] | None = None, lib_dirs: tuple[str, ...] = NCCL_LIB_DIRS
) -> str | None:
    """NCCL as torch will load it: the pip wheel beside torch first, else the system's."""
    for directory in _site_dirs() if wheel_dirs is None else wheel_dirs:
        version = parse_nccl_names(_listing(directory))
        if version is not None:
            return version
    names = [name for directory in lib_dirs for name in _listing(directory)]
    return parse_nccl_names(names)


def _site_dirs() -> list[str]:
    try:
        return site_package_dirs()
    except Exception:  # site's own helpers differ across distributions' Pythons
        return []


def _listing(directory: str) -> list[str]:
    try:
        return os.listdir(sysroot_path(directory))
    except OSError:
        return []


def collect_hca_firmware() -> dict[str, str]:
    """{device: fw_ver} for every RDMA device that reports one."""
    firmware: dict[str, str] = {}
    for device in list_sorted(IB_CLASS_DIR):
        try:
            value = parse_fw_ver(read_text(f"{IB_CLASS_DIR}/{device}/fw_ver"))
        except OSError:  # a device the kernel refuses to describe has no firmware to compare
            continue
        if value is not None:
            firmware[device] = value
    return firmware


def _quietly(collect: Callable[[], _T], empty: _T) -> _T:
    try:
        return collect()
    except Exception:  # one unreadable source costs its own value, not the other two
        return empty


def collect_versions() -> Versions:
    """facts["versions"]; never raises (a value that cannot be read is None, or {})."""
    return {
        "ofed": _quietly(collect_ofed, None),
        "nccl": _quietly(collect_nccl, None),
        "hca_firmware": _quietly(collect_hca_firmware, {}),
    }
