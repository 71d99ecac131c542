"""How a finding names the GPU it concerns: index, PCI bus id and serial, in data and in words."""

from __future__ import annotations

from typing import Any


def gpu_ref(gpu: dict[str, Any]) -> dict[str, Any]:
    """The `gpu` field of a Result."""
    return {
        "index": gpu.get("index"),
        "pci_bus_id": gpu.get("pci_bus_id"),
        "serial": gpu.get("serial"),
    }


def gpu_label(gpu: dict[str, Any]) -> str:
    """'GPU 3 (00000000:5D:00.0, SN 1652023012345)' — what an operator reads off a chassis."""
    details = [str(gpu["pci_bus_id"])] if gpu.get("pci_bus_id") else []
    if gpu.get("serial"):
        details.append(f"SN {gpu['serial']}")
    suffix = f" ({', '.join(details)})" if details else ""
    return f"GPU {gpu.get('index', '?')}{suffix}"


def gpu_by_bus_id(facts: dict[str, Any], bus_id: str) -> dict[str, Any] | None:
    """The GPU at a PCI address in any common spelling (0000:18:00.0, 00000000:18:00.0, 18:00.0)."""
    wanted = _bus_key(bus_id)
    for gpu in facts.get("gpus") or []:
        if gpu.get("pci_bus_id") and _bus_key(str(gpu["pci_bus_id"])) == wanted:
            return dict(gpu)
    return None


def _bus_key(bus_id: str) -> str:
    parts = bus_id.strip().lower().split(":")
    # Compare bus:device.function; domains are written with 4 or 8 digits, or left out.
    return ":".join(parts[-2:])
