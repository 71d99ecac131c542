"""NVML read into plain values: the only code that touches NVML (pynvml).

A recorded node stores the same values as dcctl-recorded/nvml.json, so everything after this
reader is tested from recorded JSON. A recording of a node whose NVML failed holds
{"error": "<NVMLError_...: text>"} instead.

How NVML can fail, and what the reader does about it:
- pynvml cannot be imported: `read_nvml` returns None (no module) or raises NvmlUnavailable.
- nvmlInit or a system-wide query fails with the driver loaded (a driver/library version
  mismatch after a driver upgrade without a reboot, a missing libnvidia-ml): NvmlFailed.
- one GPU cannot be read (NVMLError_GpuIsLost after an XID 79): that device alone becomes
  {index, pci_bus_id when known, error}; the others keep their full readings.
- NVML hangs (a GPU stuck in recovery can block its ioctls for minutes): `read_nvml_within`
  gives up after a deadline and raises NvmlTimeout, leaving the reader in a daemon thread.
"""

from __future__ import annotations

import ctypes
import json
import threading
from collections.abc import Callable
from typing import Any

from dcctl.node.sysroot import active_sysroot, recorded_output

NVML_RECORDING = "nvml.json"


class NvmlUnavailable(Exception):
    """pynvml is there but cannot be imported."""


class NvmlFailed(Exception):
    """NVML itself failed (nvmlInit, the device count, the driver version)."""


class NvmlTimeout(Exception):
    """NVML did not answer within the deadline."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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
    """One GPU's plain values, or {index, pci_bus_id when known, error} when NVML cannot name
    it (NVMLError_GpuIsLost, Unknown): a lost GPU must not hide the others."""
    identity: dict[str, Any] = {"index": index}
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        # The bus id first: it names the GPU in the finding when the next calls fail.
        identity["pci_bus_id"] = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
        # Identity: a GPU NVML cannot name is a failed GPU, and these calls raise.
        identity["name"] = _text(nvml.nvmlDeviceGetName(handle))
        identity["uuid"] = _text(nvml.nvmlDeviceGetUUID(handle))
        identity["memory_total_bytes"] = int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
        return {**identity, **_read_health(nvml, handle)}
    except Exception as exc:  # NVMLError and binding surprises alike: this GPU only
        known: dict[str, Any] = {"index": index, "error": _describe(exc)}
        if "pci_bus_id" in identity:
            known["pci_bus_id"] = identity["pci_bus_id"]
        return known


def _read_health(nvml: Any, handle: Any) -> dict[str, Any]:
    mig = _query(nvml, "nvmlDeviceGetMigMode", handle)  # [current, pending]
    return {
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


def _read_recording() -> dict[str, Any] | None:
    recorded = recorded_output(NVML_RECORDING)
    if recorded is None:
        return None
    raw = dict(json.loads(recorded))
    if "error" in raw:
        raise NvmlFailed(str(raw["error"]))
    return raw


def read_nvml() -> dict[str, Any] | None:
    """Plain values from NVML, or None when pynvml is not installed.

    Under DCCTL_SYSROOT: the node's recording (dcctl-recorded/nvml.json), or None without one.
    Raises NvmlUnavailable when pynvml is there but will not import, NvmlFailed when nvmlInit
    or a system-wide query fails; a GPU NVML cannot read is a device entry with an `error`.
    """
    if active_sysroot() is not None:
        # A recorded tree: live NVML would report this host's GPUs, not the record's.
        return _read_recording()
    try:
        import pynvml
    except ModuleNotFoundError as exc:
        if exc.name != "pynvml":
            raise NvmlUnavailable(f"pynvml not available on the node ({_describe(exc)})") from exc
        return None
    except Exception as exc:  # a broken or incompatible binding
        raise NvmlUnavailable(f"pynvml not available on the node ({_describe(exc)})") from exc
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        raise NvmlFailed(_describe(exc)) from exc
    try:
        try:
            count = pynvml.nvmlDeviceGetCount()
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
            cuda = int(pynvml.nvmlSystemGetCudaDriverVersion())
        except pynvml.NVMLError as exc:
            raise NvmlFailed(_describe(exc)) from exc
        return {
            "driver_version": driver,
            "cuda_driver_version": cuda,
            "devices": [_read_device(pynvml, index) for index in range(count)],
        }
    finally:
        _query(pynvml, "nvmlShutdown")  # a failing shutdown must not hide the readings


def read_nvml_within(
    timeout_s: float, reader: Callable[[], dict[str, Any] | None] = read_nvml
) -> dict[str, Any] | None:
    """`reader()`'s answer, read in a daemon thread; NvmlTimeout after `timeout_s` seconds.

    A hung NVML call cannot be cancelled: the thread is left behind (a daemon thread does not
    keep the runtime from printing its payload and exiting) and the facts say NVML hung.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = reader()
        except BaseException as exc:  # handed to the caller's thread, whatever it is
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="dcctl-nvml", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise NvmlTimeout(f"NVML did not answer within {timeout_s:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
