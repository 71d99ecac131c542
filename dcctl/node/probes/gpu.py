"""NVIDIA driver, CUDA driver version, the GPU list and each GPU's health readings.

Sources, best first: NVML (pynvml, when importable), then the driver's own
/proc/driver/nvidia/gpus listing (identity only: no memory size, no health readings). CUDA's
version comes from NVML, else from libcuda's cuDriverGetVersion. `read_nvml` is the only code
that touches NVML and returns plain values (a recorded node stores the same values as
dcctl-recorded/nvml.json), so everything after it is tested from recorded JSON.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
from typing import Any

from dcctl.node.sysroot import active_sysroot, read_text, recorded_output, sysroot_path

DRIVER_VERSION_PATH = "/proc/driver/nvidia/version"
PROCFS_GPUS_DIR = "/proc/driver/nvidia/gpus"
NVML_RECORDING = "nvml.json"

# NVML's clock event reason bits (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*).
CLOCK_EVENT_BITS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal"),
    (0x040, "hw_thermal"),
    (0x080, "hw_power_brake"),
    (0x100, "display_clocks"),
)

# nvmlGpuFabricState_t values.
FABRIC_STATES = ("not_supported", "not_started", "in_progress", "completed")

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


def decode_clock_events(mask: int) -> list[str]:
    """NVML's clock event reasons bitmask -> names, in bit order; unknown bits are dropped."""
    return [name for bit, name in CLOCK_EVENT_BITS if mask & bit]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _flag(value: Any) -> bool | None:
    # NVML reports enable states and yes/no answers as 0/1.
    return None if value is None else bool(value)


def _parse_processes(raw: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    return [
        {
            "pid": int(proc["pid"]),
            "name": proc.get("name"),
            "used_memory_mib": _mib(proc.get("used_memory_bytes")),
        }
        for proc in raw
    ]


def _mib(value: Any) -> int | None:
    return None if value is None else int(value) // (1024 * 1024)


def _parse_ecc(raw: dict[str, Any]) -> dict[str, Any]:
    counters = (
        "volatile_corrected",
        "volatile_uncorrected",
        "aggregate_corrected",
        "aggregate_uncorrected",
    )
    ecc: dict[str, Any] = {"enabled": _flag(raw.get("mode"))}
    ecc.update((name, _int_or_none(raw.get(name))) for name in counters)
    return ecc


def _parse_row_remap(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {
        "correctable": _int_or_none(raw.get("correctable")),
        "uncorrectable": _int_or_none(raw.get("uncorrectable")),
        "pending": _flag(raw.get("pending")),
        "failed": _flag(raw.get("failure")),
    }


def _parse_retired_pages(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    return {
        "single_bit": _int_or_none(raw.get("single_bit")),
        "double_bit": _int_or_none(raw.get("double_bit")),
        "pending": _flag(raw.get("pending")),
    }


def _parse_pcie(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "gen": _int_or_none(raw.get("gen")),
        "gen_max": _int_or_none(raw.get("gen_max")),
        "width": _int_or_none(raw.get("width")),
        "width_max": _int_or_none(raw.get("width_max")),
        "replays": _int_or_none(raw.get("replay_counter")),
    }


def _parse_nvlink(raw: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    counters = ("replay", "recovery", "crc_flit", "crc_data")
    links = []
    for link in raw:
        entry: dict[str, Any] = {"link": int(link["link"]), "active": bool(link["state"])}
        entry.update((name, _int_or_none(link.get(name))) for name in counters)
        links.append(entry)
    return links


def _parse_fabric(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    state = int(raw["state"])
    return {
        "state": FABRIC_STATES[state] if 0 <= state < len(FABRIC_STATES) else f"unknown ({state})",
        "status": _int_or_none(raw.get("status")),
    }


def _watts(milliwatts: Any) -> float | None:
    return None if milliwatts is None else round(int(milliwatts) / 1000, 1)


def parse_nvml_device(dev: dict[str, Any]) -> dict[str, Any]:
    """One device of `read_nvml` -> one entry of facts["gpus"]; unreported fields are None."""
    mig = dev.get("mig_mode")
    events = dev.get("clock_event_reasons")
    return {
        "index": int(dev["index"]),
        "name": str(dev["name"]),
        "uuid": str(dev["uuid"]),
        "memory_total_mib": int(dev["memory_total_bytes"]) // (1024 * 1024),
        "pci_bus_id": normalize_bus_id(str(dev["pci_bus_id"])),
        "serial": dev.get("serial"),
        "vbios": dev.get("vbios_version"),
        "persistence_mode": _flag(dev.get("persistence_mode")),
        "mig_mode": None if mig is None else ("on" if mig else "off"),
        "processes": _parse_processes(dev.get("compute_processes")),
        "ecc": _parse_ecc(dev.get("ecc") or {}),
        "row_remap": _parse_row_remap(dev.get("remapped_rows")),
        "retired_pages": _parse_retired_pages(dev.get("retired_pages")),
        "pcie": _parse_pcie(dev.get("pcie") or {}),
        "clock_events": None if events is None else decode_clock_events(int(events)),
        "temperature_c": _int_or_none(dev.get("temperature_c")),
        "temperature_slowdown_c": _int_or_none(dev.get("temperature_slowdown_c")),
        "temperature_shutdown_c": _int_or_none(dev.get("temperature_shutdown_c")),
        "power_w": _watts(dev.get("power_usage_mw")),
        "power_limit_w": _watts(dev.get("power_limit_mw")),
        "nvlink": _parse_nvlink(dev.get("nvlinks")),
        "fabric": _parse_fabric(dev.get("fabric")),
    }


def parse_nvml(raw: dict[str, Any]) -> dict[str, Any]:
    """`read_nvml`'s plain values -> {driver, cuda, gpus}."""
    gpus = [parse_nvml_device(dev) for dev in raw["devices"]]
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
