"""How a finding names the GPU it concerns: index, PCI bus id and serial, in data and in words."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import shown

# A node's GPUs by PCI address (see _bus_key), built once per host: a lookup per kernel-log
# event must not scan the GPU list each time.
BusIndex = dict[Any, dict[str, Any]]


def gpu_ref(gpu: dict[str, Any]) -> dict[str, Any]:
    """The `gpu` field of a Result."""
    return {
        "index": gpu.get("index"),
        "pci_bus_id": gpu.get("pci_bus_id"),
        "serial": gpu.get("serial"),
    }


def gpu_label(gpu: dict[str, Any]) -> str:
    """'GPU 3 (00000000:5D:00.0, SN 1652023012345)' — what an operator reads off a chassis."""
    details = [shown(gpu["pci_bus_id"])] if gpu.get("pci_bus_id") else []
    if gpu.get("serial"):
        details.append(f"SN {shown(gpu['serial'])}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"GPU {shown(gpu.get('index', '?'))}{suffix}"


def bus_index(facts: dict[str, Any]) -> BusIndex:
    """The node's GPUs by PCI address; where two share one, the first listed."""
    index: BusIndex = {}
    for gpu in facts.get("gpus") or []:
        if gpu.get("pci_bus_id"):
            index.setdefault(_bus_key(str(gpu["pci_bus_id"])), gpu)
    return index


def gpu_at(index: BusIndex, bus_id: str) -> dict[str, Any] | None:
    """The GPU at a PCI address in any common spelling (0000:18:00.0, 00000000:18:00.0,
    18:00.0 for domain 0), from a bus_index: the whole domain:bus:device.function must match."""
    return index.get(_bus_key(bus_id))


def _bus_key(bus_id: str) -> tuple[int, int, int, int] | str:
    """(domain, bus, device, function); domains are written with 4 or 8 digits, or left out
    (domain 0). An address that does not parse is compared as written, case aside."""
    text = bus_id.strip().lower()
    parts = text.split(":")
    if len(parts) == 2:
        parts.insert(0, "0")
    if len(parts) != 3:
        return text
    domain, bus, slot = parts
    device, _, function = slot.partition(".")
    try:
        return (int(domain, 16), int(bus, 16), int(device, 16), int(function or "0", 16))
    except ValueError:
        return text
