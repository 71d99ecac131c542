"""Without NVML: the GPU list from /proc/driver/nvidia/gpus, CUDA's version from libcuda."""

from __future__ import annotations

import ctypes
import os
from typing import Any

from dcctl.node.probes.gpu.nvml_parse import normalize_bus_id
from dcctl.node.sysroot import read_text, sysroot_path

PROCFS_GPUS_DIR = "/proc/driver/nvidia/gpus"


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
