"""NVIDIA driver, CUDA driver version, the GPU list and each GPU's health readings.

Sources, best first: NVML (pynvml, when importable), then the driver's own
/proc/driver/nvidia/gpus listing (identity only: no memory size, no health readings). CUDA's
version comes from NVML, else from libcuda's cuDriverGetVersion.

nvml_read reads NVML into plain values, nvml_parse turns them into facts, and fallback reads
procfs and libcuda; this module picks the source. With the driver loaded and no NVML
readings, `nvml_error` {kind, message} says why: "unavailable" (no usable pynvml), "failed"
(nvmlInit or a system query failed: nvidia-smi and CUDA fail the same way), "timeout" (NVML
did not answer within the deadline) or "error" (the reader broke).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
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
from dcctl.node.probes.gpu.nvml_read import (
    NVML_RECORDING,
    NvmlFailed,
    NvmlTimeout,
    NvmlUnavailable,
    read_nvml,
    read_nvml_within,
)
from dcctl.node.sysroot import RECORDED_DIR, active_sysroot, read_text, sysroot_path

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
    "read_nvml_within",
    "read_procfs_gpus",
]

DRIVER_VERSION_PATH = "/proc/driver/nvidia/version"
# How long NVML may take to answer before the facts say it hung (a healthy 8-GPU node: < 1 s).
NVML_TIMEOUT_S = 20.0
PYNVML_MISSING = "pynvml not available on the node"

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


def _nvml_failure(exc: Exception) -> dict[str, str]:
    if isinstance(exc, NvmlUnavailable):
        return {"kind": "unavailable", "message": str(exc)}
    if isinstance(exc, NvmlFailed):
        return {"kind": "failed", "message": str(exc)}
    if isinstance(exc, NvmlTimeout):
        return {"kind": "timeout", "message": str(exc)}
    return {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}


def _no_reader() -> str:
    if active_sysroot() is not None:
        return f"no NVML recording ({RECORDED_DIR}/{NVML_RECORDING})"
    return PYNVML_MISSING


def collect_gpu(
    nvml_timeout_s: float = NVML_TIMEOUT_S,
    reader: Callable[[], dict[str, Any] | None] = read_nvml,
) -> dict[str, Any]:
    """{driver, cuda, gpus, gpu_source}; with the driver loaded and no NVML readings, also
    nvml_error {kind, message}, and probe_errors {"nvml": message} unless pynvml is missing.

    `reader` runs in a daemon thread for at most `nvml_timeout_s` seconds.
    """
    text = read_text(DRIVER_VERSION_PATH)
    if text is None:
        return {"driver": None, "cuda": None, "gpus": [], "gpu_source": "none"}
    facts: dict[str, Any] = {"driver": parse_driver_version(text)}
    failure: dict[str, str] | None = None
    try:
        raw = read_nvml_within(nvml_timeout_s, reader)
    except Exception as exc:  # NVML's failures and the reader's own: fall back, say why
        raw, failure = None, _nvml_failure(exc)
    if raw is not None:
        nvml = parse_nvml(raw)
        return {
            **facts,
            "driver": facts["driver"] or nvml["driver"],
            "cuda": nvml["cuda"],
            "gpus": nvml["gpus"],
            "gpu_source": "nvml",
        }
    if failure is None:
        failure = {"kind": "unavailable", "message": _no_reader()}
    facts["nvml_error"] = failure
    if failure["kind"] != "unavailable":
        facts["probe_errors"] = {"nvml": failure["message"]}
    # A recorded tree without an NVML recording: the live libcuda is not the record's.
    cuda_int = read_libcuda_version() if active_sysroot() is None else None
    return {
        **facts,
        "cuda": format_cuda_version(cuda_int) if cuda_int is not None else None,
        "gpus": read_procfs_gpus(),
        "gpu_source": "procfs",
    }
