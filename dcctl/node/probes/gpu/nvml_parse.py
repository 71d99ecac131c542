"""NVML's plain values (`read_nvml`'s, or a recording's) -> facts["gpus"] entries; pure."""

from __future__ import annotations

from typing import Any

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
    """One device of `read_nvml` -> one entry of facts["gpus"]; unreported fields are None.

    A device NVML could not read stays {index, pci_bus_id (None when unknown), error}.
    """
    if dev.get("error") is not None:
        bus_id = dev.get("pci_bus_id")
        return {
            "index": int(dev["index"]),
            "pci_bus_id": None if bus_id is None else normalize_bus_id(str(bus_id)),
            "error": str(dev["error"]),
        }
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
