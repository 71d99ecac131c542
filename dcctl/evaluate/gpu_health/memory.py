"""Memory health checks: ECC mode and counts, row remapping, retired pages."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.gpu_health.check import Finding, GpuCheck, field, mode_check, on_off_reading

ecc_mode = mode_check("ECC", on_off_reading("ecc", "enabled"))


def ecc_uncorrected(gpus: list[dict[str, Any]]) -> GpuCheck:
    return GpuCheck(
        0,
        read=field("ecc", "volatile_uncorrected"),
        judge=lambda n: (
            None
            if n == 0
            else Finding("fail", f"{n} uncorrected ECC errors since the driver loaded")
        ),
        passed=lambda counts: "without uncorrected ECC errors since the driver loaded",
        unreported="uncorrected ECC counts not reported (ECC off or unsupported)",
    )


def ecc_correctable(gpus: list[dict[str, Any]], limit: int) -> GpuCheck:
    return GpuCheck(
        limit,
        read=field("ecc", "volatile_corrected"),
        judge=lambda n: (
            None
            if n <= limit
            else Finding("warn", f"{n} corrected ECC errors since the driver loaded (over {limit})")
        ),
        passed=lambda counts: f"with at most {max(counts)} corrected ECC errors (limit {limit})",
        unreported="corrected ECC counts not reported (ECC off or unsupported)",
    )


def _row_remap_finding(rows: dict[str, Any]) -> Finding | None:
    remapped = (
        f"{rows.get('correctable')} correctable and "
        f"{rows.get('uncorrectable')} uncorrectable rows remapped"
    )
    if rows.get("failed"):
        return Finding("fail", f"row remapping failed, no spare rows left ({remapped})")
    if rows.get("pending"):
        return Finding("fail", f"row remap pending until the GPU is reset ({remapped})")
    return None


def row_remap(gpus: list[dict[str, Any]]) -> GpuCheck:
    return GpuCheck(
        "no pending or failed row remap",
        read=field("row_remap"),
        judge=_row_remap_finding,
        passed=lambda rows: "with no pending or failed row remap",
        unreported=None,
    )


def retired_pages(gpus: list[dict[str, Any]]) -> GpuCheck:
    return GpuCheck(
        "no retired pages pending",
        read=field("retired_pages"),
        judge=lambda pages: (
            Finding(
                "fail",
                f"page retirement pending until the GPU is reset ({pages.get('single_bit')} "
                f"single-bit and {pages.get('double_bit')} double-bit pages retired)",
            )
            if pages.get("pending")
            else None
        ),
        passed=lambda pages: "with no retired pages pending",
        unreported=None,
    )
