"""Recorded node trees for tests: the healthy H100 node, or it with one fault laid over it.

A fault is a folder under tests/fixtures/faults/<name>/ holding only the files that differ
from tests/fixtures/sysroots/healthy-h100/ (same relative paths). A file named `<path>.absent`
removes `<path>` from the copy (a port that vanished, a module that is not loaded).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"
HEALTHY = FIXTURES / "sysroots" / "healthy-h100"
FAULTS = FIXTURES / "faults"

# What the healthy node is expected to be: the inventory an operator would write for it.
H100_EXPECT = {
    "os": "Ubuntu 22.04*",
    "kernel": ">=5.15",
    "driver": ">=550.54",
    "gpu_count": 8,
    "gpu_model": "*H100*",
    "ib_ports": 8,
    "ib_rate": 400,
    "mounts": ["/data", "/raid"],
    "nvme_count": 8,
}

# Each fault and the only results that may differ from `pass` on it, with their status (with
# H100_EXPECT and a DCGM level 1 run). The healthy node has none.
FAULT_FINDINGS: dict[str, dict[str, str]] = {
    "gpu-missing": {"gpu.count": "fail"},
    "row-remap-pending": {"gpu.row_remap": "fail"},
    "pcie-x8": {"gpu.pcie.width": "fail"},
    "nvlink-down": {"gpu.nvlink.state": "fail"},
    "thermal-slowdown": {"gpu.clocks": "fail"},
    "vbios-mismatch": {"gpu.vbios": "fail"},
    "xid-79": {"kernel.xid": "fail"},
    "sxid-fatal": {"kernel.sxid": "fail"},
    "mlx5-pcie-limited": {"kernel.mlx5_pcie": "warn"},
    "nouveau-loaded": {"modules.nouveau": "fail"},
    "peermem-missing": {"modules.peermem": "fail"},
    "fabric-manager-down": {"fabric.manager": "fail"},
    # A down port is also below the port count and the rate: three true statements.
    "ib-port-down": {"ib.state": "fail", "ib.ports": "fail", "ib.rate": "fail"},
    "ib-half-rate": {"ib.rate": "fail"},
    "ib-link-flaps": {"ib.link_downed": "warn"},
    "nvme-missing": {"nvme.count": "fail"},
    "mount-read-only": {"mounts.writable:/raid": "fail"},
    "dcgm-fail": {"dcgm.software": "fail"},
}


def fault_names() -> list[str]:
    return sorted(p.name for p in FAULTS.iterdir() if p.is_dir()) if FAULTS.is_dir() else []


def build_sysroot(destination: Path, fault: str | None = None) -> Path:
    """A copy of the healthy tree with `fault`'s files laid over it; returns its root."""
    root = destination / (fault or "healthy-h100")
    shutil.copytree(HEALTHY, root, symlinks=True)
    if fault is None:
        return root
    overlay = FAULTS / fault
    for source in sorted(overlay.rglob("*")):
        if source.is_dir():
            continue
        relative = source.relative_to(overlay)
        if source.name.endswith(".absent"):
            target = root / relative.with_name(source.name[: -len(".absent")])
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
            continue
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    return root


def hanging_sysroot(path: Path) -> Path:
    """A node whose /etc/os-release is a FIFO: the real runtime blocks reading it, forever."""
    (path / "etc").mkdir(parents=True)
    os.mkfifo(path / "etc" / "os-release")
    return path
