"""NVML read into plain values: the only code that touches NVML (pynvml).

A recorded node stores the same values as dcctl-recorded/nvml.json, so everything after this
reader is tested from recorded JSON.
"""

from __future__ import annotations

import ctypes
import json
from typing import Any

from dcctl.node.sysroot import active_sysroot, recorded_output

NVML_RECORDING = "nvml.json"


def _text(value: Any) -> str:
    # Older pynvml releases return bytes where newer ones return str.
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _query(nvml: Any, function: str, *args: Any) -> Any:
    """One NVML call, or None when this GPU, driver or binding cannot answer it."""
    # NotSupported (a feature this GPU lacks), NoPermission, FunctionNotFound (an older
    # driver), AttributeError (an older nvidia-ml-py): that one reading is unknown, no more.
    try:
        return getattr(nvml, function)(*args)
    except (nvml.NVMLError, AttributeError):
        return None


def _read_processes(nvml: Any, handle: Any) -> list[dict[str, Any]] | None:
    processes = _query(nvml, "nvmlDeviceGetComputeRunningProcesses", handle)
    if processes is None:
        return None
    return [
        {
            "pid": int(proc.pid),
            "name": _optional_text(_query(nvml, "nvmlSystemGetProcessName", proc.pid)),
            # None where the driver cannot account it (pynvml maps NVML's "not available").
            "used_memory_bytes": proc.usedGpuMemory,
        }
        for proc in processes
    ]


def _read_ecc(nvml: Any, handle: Any) -> dict[str, Any]:
    def count(error_type: int, counter_type: int) -> Any:
        return _query(nvml, "nvmlDeviceGetTotalEccErrors", handle, error_type, counter_type)

    modes = _query(nvml, "nvmlDeviceGetEccMode", handle)  # [current, pending]
    corrected, uncorrected = (
        nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED,
        nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
    )
    return {
        "mode": None if modes is None else modes[0],
        "volatile_corrected": count(corrected, nvml.NVML_VOLATILE_ECC),
        "volatile_uncorrected": count(uncorrected, nvml.NVML_VOLATILE_ECC),
        "aggregate_corrected": count(corrected, nvml.NVML_AGGREGATE_ECC),
        "aggregate_uncorrected": count(uncorrected, nvml.NVML_AGGREGATE_ECC),
    }


def _read_remapped_rows(nvml: Any, handle: Any) -> dict[str, Any] | None:
    rows = _query(nvml, "nvmlDeviceGetRemappedRows", handle)
    if rows is None:
        return None
    correctable, uncorrectable, pending, failure = rows
    return {
        "correctable": int(correctable),
        "uncorrectable": int(uncorrectable),
        "pending": int(pending),
        "failure": int(failure),
    }


def _read_retired_pages(nvml: Any, handle: Any) -> dict[str, Any] | None:
    def count(cause: int) -> int | None:
        pages = _query(nvml, "nvmlDeviceGetRetiredPages", handle, cause)
        return None if pages is None else len(pages)

    pages = {
        "single_bit": count(nvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
        "double_bit": count(nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
        "pending": _query(nvml, "nvmlDeviceGetRetiredPagesPendingStatus", handle),
    }
    # Ampere and later remap rows instead and answer NotSupported to all three.
    return None if all(value is None for value in pages.values()) else pages


def _read_pcie(nvml: Any, handle: Any) -> dict[str, Any]:
    return {
        "gen": _query(nvml, "nvmlDeviceGetCurrPcieLinkGeneration", handle),
        "gen_max": _query(nvml, "nvmlDeviceGetMaxPcieLinkGeneration", handle),
        "width": _query(nvml, "nvmlDeviceGetCurrPcieLinkWidth", handle),
        "width_max": _query(nvml, "nvmlDeviceGetMaxPcieLinkWidth", handle),
        "replay_counter": _query(nvml, "nvmlDeviceGetPcieReplayCounter", handle),
    }


def _read_clock_event_reasons(nvml: Any, handle: Any) -> Any:
    reasons = _query(nvml, "nvmlDeviceGetCurrentClocksEventReasons", handle)
    if reasons is None:
        # Drivers and bindings from before the rename (R535) know only the old name.
        reasons = _query(nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
    return reasons


def _read_nvlinks(nvml: Any, handle: Any) -> list[dict[str, Any]]:
    counters = {
        "replay": nvml.NVML_NVLINK_ERROR_DL_REPLAY,
        "recovery": nvml.NVML_NVLINK_ERROR_DL_RECOVERY,
        "crc_flit": nvml.NVML_NVLINK_ERROR_DL_CRC_FLIT,
        "crc_data": nvml.NVML_NVLINK_ERROR_DL_CRC_DATA,
    }
    links = []
    for link in range(nvml.NVML_NVLINK_MAX_LINKS):
        state = _query(nvml, "nvmlDeviceGetNvLinkState", handle, link)
        if state is None:
            continue  # not a populated link on this GPU
        entry: dict[str, Any] = {"link": link, "state": int(state)}
        for name, counter in counters.items():
            entry[name] = _query(nvml, "nvmlDeviceGetNvLinkErrorCounter", handle, link, counter)
        links.append(entry)
    return links


class _FabricInfoV1(ctypes.Structure):
    """nvmlGpuFabricInfo_t as nvml.h lays it out (drivers before R550 only have this one)."""

    # nvidia-ml-py 12.x declares clusterUuid as 80 bytes instead of 16, which shifts status and
    # state, so the binding's own structs cannot be trusted: these are passed to it instead.
    _fields_ = [
        ("clusterUuid", ctypes.c_ubyte * 16),
        ("status", ctypes.c_uint),
        ("cliqueId", ctypes.c_uint),
        ("state", ctypes.c_ubyte),
    ]


class _FabricInfoV2(ctypes.Structure):
    """nvmlGpuFabricInfo_v2_t as nvml.h lays it out."""

    _fields_ = [
        ("version", ctypes.c_uint),
        ("clusterUuid", ctypes.c_ubyte * 16),
        ("status", ctypes.c_uint),
        ("cliqueId", ctypes.c_uint),
        ("state", ctypes.c_ubyte),
        ("healthMask", ctypes.c_uint),
    ]


def _read_fabric(nvml: Any, handle: Any) -> dict[str, Any] | None:
    """The GPU's NVLink fabric registration {state, status}; None where NVML has no answer."""
    info: _FabricInfoV1 | _FabricInfoV2 = _FabricInfoV2()
    info.version = ctypes.sizeof(_FabricInfoV2) | (2 << 24)  # NVML's nvmlGpuFabricInfo_v2
    if _query(nvml, "nvmlDeviceGetGpuFabricInfoV", handle, ctypes.byref(info)) is None:
        info = _FabricInfoV1()
        if _query(nvml, "nvmlDeviceGetGpuFabricInfo", handle, ctypes.byref(info)) is None:
            return None
    return {"state": int(info.state), "status": int(info.status)}


def _read_thermals(nvml: Any, handle: Any) -> dict[str, Any]:
    def threshold(kind: int) -> Any:
        return _query(nvml, "nvmlDeviceGetTemperatureThreshold", handle, kind)

    return {
        "temperature_c": _query(
            nvml, "nvmlDeviceGetTemperature", handle, nvml.NVML_TEMPERATURE_GPU
        ),
        "temperature_slowdown_c": threshold(nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN),
        "temperature_shutdown_c": threshold(nvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN),
        "power_usage_mw": _query(nvml, "nvmlDeviceGetPowerUsage", handle),
        "power_limit_mw": _query(nvml, "nvmlDeviceGetEnforcedPowerLimit", handle),
    }


def _read_device(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    mig = _query(nvml, "nvmlDeviceGetMigMode", handle)  # [current, pending]
    return {
        # Identity: a GPU NVML cannot name is an NVML failure, and these calls raise.
        "index": index,
        "name": _text(nvml.nvmlDeviceGetName(handle)),
        "uuid": _text(nvml.nvmlDeviceGetUUID(handle)),
        "memory_total_bytes": int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        "pci_bus_id": _text(nvml.nvmlDeviceGetPciInfo(handle).busId),
        "serial": _optional_text(_query(nvml, "nvmlDeviceGetSerial", handle)),
        "vbios_version": _optional_text(_query(nvml, "nvmlDeviceGetVbiosVersion", handle)),
        "persistence_mode": _query(nvml, "nvmlDeviceGetPersistenceMode", handle),
        "mig_mode": None if mig is None else mig[0],
        "compute_processes": _read_processes(nvml, handle),
        "ecc": _read_ecc(nvml, handle),
        "remapped_rows": _read_remapped_rows(nvml, handle),
        "retired_pages": _read_retired_pages(nvml, handle),
        "pcie": _read_pcie(nvml, handle),
        "clock_event_reasons": _read_clock_event_reasons(nvml, handle),
        **_read_thermals(nvml, handle),
        "nvlinks": _read_nvlinks(nvml, handle),
        "fabric": _read_fabric(nvml, handle),
    }


def read_nvml() -> dict[str, Any] | None:
    """Plain values from NVML, or None when pynvml is not installed.

    Under DCCTL_SYSROOT: the node's recording (dcctl-recorded/nvml.json), or None without one.
    A failing identity call or nvmlInit propagates; any other reading NVML cannot give is None.
    """
    if active_sysroot() is not None:
        # A recorded tree: live NVML would report this host's GPUs, not the record's.
        recorded = recorded_output(NVML_RECORDING)
        return None if recorded is None else dict(json.loads(recorded))
    try:
        import pynvml
    except ImportError:
        return None
    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
        return {
            "driver_version": _text(pynvml.nvmlSystemGetDriverVersion()),
            "cuda_driver_version": int(pynvml.nvmlSystemGetCudaDriverVersion()),
            "devices": [_read_device(pynvml, index) for index in range(count)],
        }
    finally:
        pynvml.nvmlShutdown()
