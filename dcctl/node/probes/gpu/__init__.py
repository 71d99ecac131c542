"""NVIDIA driver, CUDA driver version, the GPU list and each GPU's health readings.

Sources, best first: NVML (pynvml, when importable), then the driver's own
/proc/driver/nvidia/gpus listing (identity only: no memory size, no health readings). CUDA's
version comes from NVML, else from libcuda's cuDriverGetVersion.

nvml_read reads NVML into plain values, nvml_parse turns them into facts, and fallback reads
procfs and libcuda; this module picks the source.
"""

from __future__ import annotations

import os
import re
from typing import Any

from dcctl.node.probes.gpu.fallback import (
    parse_procfs_gpus,
    read_libcuda_version,
    read_procfs_gpus,
)
from dcctl.node.probes.gpu.nvml_parse import (
    decode_clock_events,
    format_cuda_version,
    normalize_bus_id,
    parse_nvml,
    parse_nvml_device,
)
from dcctl.node.probes.gpu.nvml_read import read_nvml
from dcctl.node.sysroot import active_sysroot, read_text, sysroot_path

__all__ = [
    "collect_gpu",
    "decode_clock_events",
    "driver_loaded",
    "format_cuda_version",
    "normalize_bus_id",
    "parse_driver_version",
    "parse_nvml",
    "parse_nvml_device",
    "parse_procfs_gpus",
    "read_libcuda_version",
    "read_nvml",
    "read_procfs_gpus",
]

DRIVER_VERSION_PATH = "/proc/driver/nvidia/version"

_NVRM_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")


def parse_driver_version(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version, proprietary or open module."""
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = _NVRM_RE.search(line)
            return match.group(1) if match else None
    return None


def driver_loaded() -> bool:
    """Whether the NVIDIA kernel module is loaded (it creates /proc/driver/nvidia/version)."""
    return os.path.exists(sysroot_path(DRIVER_VERSION_PATH))


def collect_gpu() -> dict[str, Any]:
    """{driver, cuda, gpus, gpu_source} plus probe_errors {"nvml": ...} when NVML failed."""
    text = read_text(DRIVER_VERSION_PATH)
    if text is None:
        return {"driver": None, "cuda": None, "gpus": [], "gpu_source": "none"}
    facts: dict[str, Any] = {"driver": parse_driver_version(text)}
    try:
        raw = read_nvml()
    except Exception as exc:  # NVMLError and friends: fall back, but say why
        raw = None
        facts["probe_errors"] = {"nvml": f"{type(exc).__name__}: {exc}"}
    if raw is not None:
        nvml = parse_nvml(raw)
        return {
            **facts,
            "driver": facts["driver"] or nvml["driver"],
            "cuda": nvml["cuda"],
            "gpus": nvml["gpus"],
            "gpu_source": "nvml",
        }
    # A recorded tree without an NVML recording: the live libcuda is not the record's.
    cuda_int = read_libcuda_version() if active_sysroot() is None else None
    return {
        **facts,
        "cuda": format_cuda_version(cuda_int) if cuda_int is not None else None,
        "gpus": read_procfs_gpus(),
        "gpu_source": "procfs",
    }
