"""NVIDIA driver, CUDA driver version and the GPU list.

Sources, best first: NVML (pynvml, when importable), then the driver's own
/proc/driver/nvidia/gpus listing (no memory size there). CUDA's version comes from NVML,
else from libcuda's cuDriverGetVersion. `read_nvml` is the only code that touches NVML and
returns plain values, so everything after it is tested from recorded JSON.
"""

from __future__ import annotations

import ctypes
import os
import re
from typing import Any

from dcctl.node.sysroot import active_sysroot, read_text, sysroot_path

DRIVER_VERSION_PATH = "/proc/driver/nvidia/version"
PROCFS_GPUS_DIR = "/proc/driver/nvidia/gpus"

_NVRM_RE = re.compile(r"Kernel Module(?:\s+for\s+\S+)?\s+(\d+(?:\.\d+)+)")


def parse_driver_version(text: str) -> str | None:
    """The driver version from /proc/driver/nvidia/version, proprietary or open module."""
    for line in text.splitlines():
        if line.startswith("NVRM version:"):
            match = _NVRM_RE.search(line)
            return match.group(1) if match else None
    return None


def format_cuda_version(value: int) -> str | None:
    """CUDA's integer version (12040) as "12.4"; None for 0, which means no CUDA."""
    if value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def normalize_bus_id(bus_id: str) -> str:
    """PCI address in NVML's form (00000000:18:00.0), whichever source reported it."""
    domain, sep, rest = bus_id.strip().partition(":")
    if not sep:
        return bus_id.strip().upper()
    return f"{domain.zfill(8)}:{rest}".upper()


def parse_nvml(raw: dict[str, Any]) -> dict[str, Any]:
    """`read_nvml`'s plain values -> {driver, cuda, gpus}."""
    gpus = [
        {
            "index": int(dev["index"]),
            "name": str(dev["name"]),
            "uuid": str(dev["uuid"]),
            "memory_total_mib": int(dev["memory_total_bytes"]) // (1024 * 1024),
            "pci_bus_id": normalize_bus_id(str(dev["pci_bus_id"])),
        }
        for dev in raw["devices"]
    ]
    cuda = raw.get("cuda_driver_version")
    return {
        "driver": raw.get("driver_version"),
        "cuda": format_cuda_version(int(cuda)) if cuda is not None else None,
        "gpus": sorted(gpus, key=lambda gpu: gpu["index"]),
    }


def parse_gpu_information(text: str) -> dict[str, str]:
    """One /proc/driver/nvidia/gpus/<bus>/information file -> its "Key: value" fields."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def parse_procfs_gpus(informations: list[str]) -> list[dict[str, Any]]:
    """The driver's per-GPU information files -> gpus, indexed in PCI order as NVML does."""
    gpus = []
    for text in informations:
        fields = parse_gpu_information(text)
        gpus.append(
            {
                "name": fields.get("Model"),
                "uuid": fields.get("GPU UUID"),
                "memory_total_mib": None,
                "pci_bus_id": normalize_bus_id(fields.get("Bus Location", "")),
            }
        )
    gpus.sort(key=lambda gpu: str(gpu["pci_bus_id"]))
    return [{"index": index, **gpu} for index, gpu in enumerate(gpus)]


def _text(value: Any) -> str:
    # Older pynvml releases return bytes where newer ones return str.
    return value.decode() if isinstance(value, bytes) else str(value)


def read_nvml() -> dict[str, Any] | None:
    """Plain values from NVML, or None when pynvml is not installed. NVML errors propagate."""
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            devices.append(
                {
                    "index": index,
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                    "memory_total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "pci_bus_id": _text(pynvml.nvmlDeviceGetPciInfo(handle).busId),
                }
            )
        return {
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": int(pynvml.nvmlSystemGetCudaDriverVersion()),
            "devices": devices,
        }
    finally:
        pynvml.nvmlShutdown()


def read_libcuda_version() -> int | None:
    """cuDriverGetVersion from libcuda (no cuInit needed), or None when it cannot be loaded."""
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return version.value


def read_procfs_gpus() -> list[dict[str, Any]]:
    directory = sysroot_path(PROCFS_GPUS_DIR)
    try:
        entries = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    texts = [read_text(f"{PROCFS_GPUS_DIR}/{entry}/information") for entry in entries]
    return parse_procfs_gpus([text for text in texts if text is not None])


def driver_loaded() -> bool:
    """Whether the NVIDIA kernel module is loaded (it creates /proc/driver/nvidia/version)."""
    return os.path.exists(sysroot_path(DRIVER_VERSION_PATH))


def collect_gpu() -> dict[str, Any]:
    """{driver, cuda, gpus, gpu_source} plus probe_errors {"nvml": ...} when NVML failed."""
    text = read_text(DRIVER_VERSION_PATH)
    if text is None:
        return {"driver": None, "cuda": None, "gpus": [], "gpu_source": "none"}
    facts: dict[str, Any] = {"driver": parse_driver_version(text)}
    if active_sysroot() is not None:
        # A recorded tree: live NVML or libcuda would report this host's GPUs, not the record's.
        return {**facts, "cuda": None, "gpus": read_procfs_gpus(), "gpu_source": "procfs"}
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
    cuda_int = read_libcuda_version()
    return {
        **facts,
        "cuda": format_cuda_version(cuda_int) if cuda_int is not None else None,
        "gpus": read_procfs_gpus(),
        "gpu_source": "procfs",
    }
