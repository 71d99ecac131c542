"""NVLink checks: link state and error counters, and NVSwitch fabric registration."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, expect_count, same


def nvlink_state(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> GpuCheck:
    wanted = settings.get("nvlink_links")
    if wanted is not None:
        wanted = expect_count(settings, "nvlink_links")

    def read(gpu: dict[str, Any]) -> list[dict[str, Any]] | None:
        links = gpu.get("nvlink")
        # No populated link and no count demanded: a PCIe GPU without NVLink.
        return None if links is None or (not links and wanted is None) else links

    def judge(links: list[dict[str, Any]]) -> Finding | None:
        down = [f"link {link['link']}" for link in links if not link.get("active")]
        active = len(links) - len(down)
        listed = f"; down: {', '.join(down)}" if down else ""
        if wanted is not None:
            if active == wanted:
                return None
            return Finding("fail", f"{active} NVLink links active (expected {wanted}){listed}")
        if not down:
            return None
        return Finding("fail", f"{active} of {len(links)} NVLink links active{listed}")

    def passed(readings: list[list[dict[str, Any]]]) -> str:
        count = same([len(links) for links in readings])
        every = f"all {count}" if count is not None else "all their"
        return f"with {wanted if wanted is not None else every} NVLink links active"

    return GpuCheck(
        "gpu.nvlink.state",
        wanted if wanted is not None else "every populated link active",
        read=read,
        judge=judge,
        passed=passed,
        unreported=None,
        observe=lambda links: sum(1 for link in links if link.get("active")),
    )


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
            errors.append(f"link {link['link']} {count} {name} errors (over {limits[name]})")
    return errors


def _worst_counts(links: list[dict[str, Any]]) -> dict[str, int]:
    """The highest count any link shows, per error counter."""
    names = ("replay", "recovery", "crc_flit", "crc_data")
    return {name: max((link.get(name) or 0 for link in links), default=0) for name in names}


def nvlink_errors(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> GpuCheck:
    limits = {
        "replay": expect_count(settings, "max_nvlink_replay"),
        "recovery": expect_count(settings, "max_nvlink_recovery"),
        "CRC": expect_count(settings, "max_nvlink_crc"),
    }

    def judge(links: list[dict[str, Any]]) -> Finding | None:
        errors = [error for link in links for error in _link_errors(link, limits)]
        return Finding("warn", "NVLink " + "; ".join(errors)) if errors else None

    return GpuCheck(
        "gpu.nvlink.errors",
        limits,
        read=lambda gpu: gpu.get("nvlink") or None,
        judge=judge,
        passed=lambda readings: (
            "with NVLink error counters within "
            + ", ".join(f"{name} {limit}" for name, limit in limits.items())
        ),
        unreported=None,
        observe=_worst_counts,
    )


def _fabric_finding(fabric: dict[str, Any]) -> Finding | None:
    if fabric["state"] != "completed":
        return Finding(
            "fail",
            f"NVLink fabric registration {fabric['state']} (is nvidia-fabricmanager running?)",
        )
    if fabric.get("status"):
        return Finding(
            "fail", f"NVLink fabric registration failed (NVML status {fabric['status']})"
        )
    return None


def fabric(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> GpuCheck | None:
    if settings.get("fabric_manager") == "off":
        return None

    def read(gpu: dict[str, Any]) -> dict[str, Any] | None:
        fabric = gpu.get("fabric")
        # Only GPUs on an NVSwitch fabric report a state other than not_supported.
        return None if not fabric or fabric.get("state") == "not_supported" else fabric

    return GpuCheck(
        "gpu.fabric",
        "completed",
        read=read,
        judge=_fabric_finding,
        passed=lambda readings: "registered with the NVLink fabric",
        unreported=None,
    )
