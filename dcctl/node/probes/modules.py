"""Kernel modules, NVSwitch presence and the NVIDIA fabric manager service.

On NVSwitch systems (HGX A100/H100) GPUs cannot talk over NVLink until the fabric manager
has programmed the switches, so whether it runs matters as much as the driver.
"""

from __future__ import annotations

import os
import subprocess

from dcctl.node.sysroot import active_sysroot, read_text, recorded_output, sysroot_path

MODULES_PATH = "/proc/modules"
PCI_DEVICES_DIR = "/sys/bus/pci/devices"
NVIDIA_VENDOR = "0x10de"
NVSWITCH_CLASS = "0x068000"  # PCI class "bridge, other": how NVSwitches enumerate
FABRIC_MANAGER_UNIT = "nvidia-fabricmanager"
RECORDED_FABRIC_MANAGER = "systemctl-nvidia-fabricmanager.txt"
SYSTEMCTL_TIMEOUT_S = 2.0


def parse_modules(text: str) -> list[str]:
    """/proc/modules ("nvidia_uvm 1540096 0 - Live 0x0 (POE)") -> module names, as listed."""
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def collect_modules() -> list[str] | None:
    """Loaded modules; None where /proc/modules is missing (a kernel without module support)."""
    text = read_text(MODULES_PATH)
    return parse_modules(text) if text is not None else None


def _reads(text: str | None, wanted: str) -> bool:
    return text is not None and text.strip().lower() == wanted


def collect_nvswitch_count() -> int | None:
    """NVSwitches on the PCI bus; None where sysfs has no PCI device list."""
    try:
        devices = os.listdir(sysroot_path(PCI_DEVICES_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return None
    count = 0
    for device in devices:
        base = f"{PCI_DEVICES_DIR}/{device}"
        # Class first: it rules out almost every device, so few vendor files are read.
        if _reads(read_text(f"{base}/class"), NVSWITCH_CLASS) and _reads(
            read_text(f"{base}/vendor"), NVIDIA_VENDOR
        ):
            count += 1
    return count


def parse_is_active(stdout: str) -> str:
    """`systemctl is-active` output -> its state word; "unknown" when it printed none
    (systemd not running, as in most containers)."""
    words = stdout.split()
    return words[0] if words else "unknown"


def collect_fabric_manager() -> str | None:
    """The nvidia-fabricmanager unit's state ("active", "inactive", "failed", ...).

    None where systemctl is missing, or under DCCTL_SYSROOT with nothing recorded.
    """
    if active_sysroot() is not None:
        recorded = recorded_output(RECORDED_FABRIC_MANAGER)
        return parse_is_active(recorded) if recorded is not None else None
    try:
        # is-active exits non-zero for every state but "active"; the state is on stdout.
        proc = subprocess.run(
            ["systemctl", "is-active", FABRIC_MANAGER_UNIT],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=SYSTEMCTL_TIMEOUT_S,
        )
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return "unknown"
    return parse_is_active(proc.stdout)
