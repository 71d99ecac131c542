"""NVLink checks: link state and error counters, and NVSwitch fabric registration."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, same


def nvlink_state(gpus: list[dict[str, Any]], wanted: int | None) -> GpuCheck:
    """Every populated link active, or exactly `wanted` links active per GPU."""

    def read(gpu: dict[str, Any]) -> list[dict[str, Any]] | None:
        links = gpu.get("nvlink")
        # No populated link and no count demanded: a PCIe GPU without NVLink.
        return None if links is None or (not links and wanted is None) else links

    def judge(links: list[dict[str, Any]]) -> Finding | None:
        down = [f"link {shown(link.get('link'))}" for link in links if not link.get("active")]
        active = len(links) - len(down)
        named = f"; down: {listed(down, len(down))}" if down else ""
        if wanted is not None:
            if active == wanted:
                return None
            return Finding("fail", f"{active} NVLink links active (expected {wanted}){named}")
        if not down:
            return None
        return Finding("fail", f"{active} of {len(links)} NVLink links active{named}")

    def passed(readings: list[list[dict[str, Any]]]) -> str:
        count = same([len(links) for links in readings])
        every = f"all {count}" if count is not None else "all their"
        return f"with {wanted if wanted is not None else every} NVLink links active"

    return GpuCheck(
        wanted if wanted is not None else "every populated link active",
        read=read,
        judge=judge,
        passed=passed,
        unreported=None,
        observe=lambda links: sum(1 for link in links if link.get("active")),
    )


COUNTERS = ("replay", "recovery", "crc_flit", "crc_data")


def _counted_links(gpu: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The GPU's links with at least one readable error counter; None when no link has one.

    A link whose counters all read None (NotSupported, NoPermission) says nothing about its
    errors: it is not judged, and it must not pass as if it had counted none.
    """
    links = [
        link
        for link in gpu.get("nvlink") or []
        if any(link.get(name) is not None for name in COUNTERS)
    ]
    return links or None


def _link_errors(link: dict[str, Any], limits: dict[str, int]) -> list[str]:
    crc = [n for n in (link.get("crc_flit"), link.get("crc_data")) if n is not None]
    counts: dict[str, int | None] = {
        "replay": link.get("replay"),
        "recovery": link.get("recovery"),
        # Flit and data CRC errors are two views of the same corrupted traffic.
        "CRC": sum(crc) if crc else None,
    }
    errors = []
    for name, count in counts.items():
        if count is not None and count > limits[name]:
            errors.append(
                f"link {shown(link.get('link'))} {count} {name} errors (over {limits[name]})"
            )
    return errors


def _worst_counts(links: list[dict[str, Any]]) -> dict[str, int | None]:
    """The highest count any link shows, per error counter; None where no link reads it."""
    worst: dict[str, int | None] = {}
    for name in COUNTERS:
        read = [link[name] for link in links if link.get(name) is not None]
        worst[name] = max(read) if read else None
    return worst


def nvlink_errors(gpus: list[dict[str, Any]], replay: int, recovery: int, crc: int) -> GpuCheck:
    limits = {"replay": replay, "recovery": recovery, "CRC": crc}

    def judge(links: list[dict[str, Any]]) -> Finding | None:
        errors = [error for link in links for error in _link_errors(link, limits)]
        return Finding("warn", "NVLink " + listed(errors, len(errors), "; ")) if errors else None

    # GPUs with populated links but no readable counter: one skip that says so. GPUs without
    # NVLink at all: no result.
    has_links = any(gpu.get("nvlink") for gpu in gpus)
    return GpuCheck(
        limits,
        read=_counted_links,
        judge=judge,
        passed=lambda readings: (
            "with NVLink error counters within "
            + ", ".join(f"{name} {limit}" for name, limit in limits.items())
        ),
        unreported="NVLink error counters not readable" if has_links else None,
        observe=_worst_counts,
    )


def _fabric_finding(fabric: dict[str, Any]) -> Finding | None:
    if fabric["state"] != "completed":
        return Finding(
            "fail",
            f"NVLink fabric registration {shown(fabric['state'])} "
            "(is nvidia-fabricmanager running?)",
        )
    if fabric.get("status"):
        return Finding(
            "fail", f"NVLink fabric registration failed (NVML status {shown(fabric['status'])})"
        )
    return None


def fabric(gpus: list[dict[str, Any]], fabric_manager: str) -> GpuCheck | None:
    if fabric_manager == "off":
        return None

    def read(gpu: dict[str, Any]) -> dict[str, Any] | None:
        fabric = gpu.get("fabric")
        # Only GPUs on an NVSwitch fabric report a state other than not_supported.
        return None if not fabric or fabric.get("state") == "not_supported" else fabric

    return GpuCheck(
        "completed",
        read=read,
        judge=_fabric_finding,
        passed=lambda readings: "registered with the NVLink fabric",
        unreported=None,
    )
