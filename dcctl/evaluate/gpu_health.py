"""GPU health: judge each GPU's NVML readings against `expect` (HEALTH_DEFAULTS under it).

Every check gives one `pass` for the node when all GPUs are fine, or one result per offending
GPU, which names the GPU (index, PCI bus id, serial). A reading a GPU does not report (None:
not supported there) skips that check for that GPU; a check no GPU reports is one `skip`, or
no result at all where the hardware has no such thing (see _GpuCheck.unreported).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from dcctl.evaluate.gpus import gpu_label, gpu_ref
from dcctl.evaluate.result import Result, Status
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS

NVML_SKIP_MESSAGE = "NVML not available; GPU health checks skipped"

# Clock event reasons that mean the hardware itself pulled the clocks down.
HW_SLOWDOWNS = ("hw_slowdown", "hw_thermal", "hw_power_brake")
# Warn when this close to the GPU's own slowdown temperature (no max_gpu_temp_c set).
SLOWDOWN_MARGIN_C = 5


class _BadExpectation(ValueError):
    """An `expect` value of the wrong shape; reported as an `error` result for its check."""


@dataclass(frozen=True)
class _Finding:
    """What is wrong with one GPU: `message` follows the GPU's label."""

    status: Status
    message: str


@dataclass(frozen=True)
class _GpuCheck:
    """One check judged GPU by GPU.

    read: the GPU's reading, or None when it does not report it (skipped for that GPU).
    judge: a finding for a bad reading, None for a good one.
    passed: the pass message's tail, from every judged reading.
    unreported: the skip reason when no GPU reports it; None for hardware the check does not
        apply to (row remapping before Ampere, retired pages after, NVLink, NVSwitch fabric),
        which then gives no result at all.
    observe: a reading as a result's observed value.
    """

    id: str
    expected: Any
    read: Callable[[dict[str, Any]], Any]
    judge: Callable[[Any], _Finding | None]
    passed: Callable[[list[Any]], str]
    unreported: str | None
    observe: Callable[[Any], Any] = lambda reading: reading


def _run(check: _GpuCheck, gpus: list[dict[str, Any]]) -> list[Result]:
    readings: list[Any] = []
    findings: list[Result] = []
    for gpu in gpus:
        reading = check.read(gpu)
        if reading is None:
            continue
        readings.append(reading)
        finding = check.judge(reading)
        if finding is not None:
            message = f"{gpu_label(gpu)}: {finding.message}"
            observed = check.observe(reading)
            result = Result(check.id, finding.status, message, observed, check.expected)
            findings.append(replace(result, gpu=gpu_ref(gpu)))
    if findings:
        return findings
    if not readings:
        if check.unreported is None:
            return []
        return [Result(check.id, "skip", check.unreported, None, check.expected)]
    message = f"{len(readings)}/{len(readings)} GPUs {check.passed(readings)}"
    if len(readings) < len(gpus):
        message += f" ({len(gpus) - len(readings)} did not report it)"
    observed = [check.observe(reading) for reading in readings]
    return [Result(check.id, "pass", message, observed, check.expected)]


# --- expectation values --------------------------------------------------------------------


def _on_off(settings: dict[str, Any], key: str) -> str | None:
    """'on' or 'off'; None for 'any' (not judged)."""
    value = settings.get(key)
    # YAML 1.1 reads a bare `on`/`off` as a boolean.
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str) and value.strip().lower() in ("on", "off", "any"):
        wanted = value.strip().lower()
        return None if wanted == "any" else wanted
    raise _BadExpectation(f"invalid expectation {key}: expected on, off or any, got {value!r}")


def _count(settings: dict[str, Any], key: str) -> int:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _BadExpectation(f"invalid expectation {key}: expected a count, got {value!r}")
    return value


def _number(settings: dict[str, Any], key: str) -> float:
    value = settings.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadExpectation(f"invalid expectation {key}: expected a number, got {value!r}")
    return float(value)


def _field(*path: str) -> Callable[[dict[str, Any]], Any]:
    """A reader for gpu[path[0]][path[1]]...; None when any level is missing."""

    def read(gpu: dict[str, Any]) -> Any:
        value: Any = gpu
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return read


def _same(values: list[Any]) -> Any:
    """The one value every GPU shares, or None when they differ."""
    return values[0] if len(set(values)) == 1 else None


# --- identity and software -----------------------------------------------------------------


def _vbios(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck | None:
    wanted = settings.get("vbios_uniform")
    if not isinstance(wanted, bool):
        raise _BadExpectation(
            f"invalid expectation vbios_uniform: expected true or false, got {wanted!r}"
        )
    if not wanted:
        return None
    counts = Counter(gpu["vbios"] for gpu in gpus if gpu.get("vbios") is not None)
    # The version most GPUs run is the reference; on a tie, the newest string.
    reference = max(counts.items(), key=lambda item: (item[1], item[0]))[0] if counts else None
    return _GpuCheck(
        "gpu.vbios",
        "identical VBIOS on every GPU",
        read=_field("vbios"),
        judge=lambda v: (
            None
            if v == reference
            else _Finding("fail", f"VBIOS {v}, the node's other GPUs run {reference}")
        ),
        passed=lambda values: f"on VBIOS {reference}",
        unreported="VBIOS version not reported",
    )


def _mode_check(
    check_id: str, key: str, what: str, read: Callable[[dict[str, Any]], Any]
) -> Callable[[list[dict[str, Any]], dict[str, Any]], _GpuCheck | None]:
    """A check that a GPU's on/off mode equals `expect[key]` ('any': not judged)."""

    def build(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck | None:
        wanted = _on_off(settings, key)
        if wanted is None:
            return None
        return _GpuCheck(
            check_id,
            wanted,
            read=read,
            judge=lambda state: (
                None if state == wanted else _Finding("fail", f"{what} {state} (expected {wanted})")
            ),
            passed=lambda states: f"{what} {wanted}",
            unreported=f"{what} not reported",
        )

    return build


def _on_off_reading(*path: str) -> Callable[[dict[str, Any]], str | None]:
    read = _field(*path)

    def as_on_off(gpu: dict[str, Any]) -> str | None:
        value = read(gpu)
        return None if value is None else ("on" if value else "off")

    return as_on_off


def _describe_process(proc: dict[str, Any]) -> str:
    memory = proc.get("used_memory_mib")
    used = f", {memory} MiB" if memory is not None else ""
    return f"pid {proc.get('pid')} {proc.get('name') or '?'}{used}"


def _processes(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    allowed = _count(settings, "max_gpu_processes")

    def judge(procs: list[dict[str, Any]]) -> _Finding | None:
        if len(procs) <= allowed:
            return None
        listed = "; ".join(_describe_process(proc) for proc in procs)
        return _Finding("fail", f"{len(procs)} compute processes (at most {allowed}): {listed}")

    return _GpuCheck(
        "gpu.processes",
        allowed,
        read=_field("processes"),
        judge=judge,
        passed=lambda counts: (
            "with no compute processes"
            if allowed == 0
            else f"with at most {allowed} compute processes"
        ),
        unreported="compute processes not reported",
    )


# --- memory --------------------------------------------------------------------------------


def _ecc_uncorrected(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    return _GpuCheck(
        "gpu.ecc.uncorrected",
        0,
        read=_field("ecc", "volatile_uncorrected"),
        judge=lambda n: (
            None
            if n == 0
            else _Finding("fail", f"{n} uncorrected ECC errors since the driver loaded")
        ),
        passed=lambda counts: "without uncorrected ECC errors since the driver loaded",
        unreported="uncorrected ECC counts not reported (ECC off or unsupported)",
    )


def _ecc_correctable(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    limit = _count(settings, "max_ecc_correctable")
    return _GpuCheck(
        "gpu.ecc.correctable",
        limit,
        read=_field("ecc", "volatile_corrected"),
        judge=lambda n: (
            None
            if n <= limit
            else _Finding(
                "warn", f"{n} corrected ECC errors since the driver loaded (over {limit})"
            )
        ),
        passed=lambda counts: f"with at most {max(counts)} corrected ECC errors (limit {limit})",
        unreported="corrected ECC counts not reported (ECC off or unsupported)",
    )


def _row_remap_finding(rows: dict[str, Any]) -> _Finding | None:
    remapped = (
        f"{rows.get('correctable')} correctable and "
        f"{rows.get('uncorrectable')} uncorrectable rows remapped"
    )
    if rows.get("failed"):
        return _Finding("fail", f"row remapping failed, no spare rows left ({remapped})")
    if rows.get("pending"):
        return _Finding("fail", f"row remap pending until the GPU is reset ({remapped})")
    return None


def _row_remap(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    return _GpuCheck(
        "gpu.row_remap",
        "no pending or failed row remap",
        read=_field("row_remap"),
        judge=_row_remap_finding,
        passed=lambda rows: "with no pending or failed row remap",
        unreported=None,
    )


def _retired_pages(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    return _GpuCheck(
        "gpu.retired_pages",
        "no retired pages pending",
        read=_field("retired_pages"),
        judge=lambda pages: (
            _Finding(
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


# --- PCIe ----------------------------------------------------------------------------------


def _pair(current: str, maximum: str) -> Callable[[dict[str, Any]], tuple[int, int] | None]:
    def read(gpu: dict[str, Any]) -> tuple[int, int] | None:
        pcie = gpu.get("pcie") or {}
        now, top = pcie.get(current), pcie.get(maximum)
        return None if now is None or top is None else (now, top)

    return read


def _pcie_width(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    def passed(pairs: list[tuple[int, int]]) -> str:
        width = _same([now for now, _ in pairs])
        return f"at PCIe x{width}" if width is not None else "at their maximum PCIe link width"

    return _GpuCheck(
        "gpu.pcie.width",
        "maximum link width",
        read=_pair("width", "width_max"),
        judge=lambda pair: (
            None
            if pair[0] >= pair[1]
            else _Finding("fail", f"PCIe link trained at x{pair[0]} of x{pair[1]}")
        ),
        passed=passed,
        unreported="PCIe link width not reported",
    )


def _pcie_gen(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    def passed(pairs: list[tuple[int, int]]) -> str:
        gen = _same([now for now, _ in pairs])
        return f"at PCIe Gen{gen}" if gen is not None else "at their maximum PCIe generation"

    # A warning only: GPUs drop the link speed at idle and raise it under load.
    return _GpuCheck(
        "gpu.pcie.gen",
        "maximum link generation",
        read=_pair("gen", "gen_max"),
        judge=lambda pair: (
            None
            if pair[0] >= pair[1]
            else _Finding("warn", f"PCIe link at Gen{pair[0]} of Gen{pair[1]} (normal at idle)")
        ),
        passed=passed,
        unreported="PCIe link generation not reported",
    )


def _pcie_replays(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    limit = _count(settings, "max_pcie_replays")
    return _GpuCheck(
        "gpu.pcie.replays",
        limit,
        read=_field("pcie", "replays"),
        judge=lambda n: (
            None
            if n <= limit
            else _Finding("warn", f"{n} PCIe replays (over {limit}): a marginal link or riser")
        ),
        passed=lambda counts: f"with at most {max(counts)} PCIe replays (limit {limit})",
        unreported="PCIe replay counter not reported",
    )


# --- clocks, thermals, power ---------------------------------------------------------------


def _clock_finding(events: list[str]) -> _Finding | None:
    hardware = [event for event in events if event in HW_SLOWDOWNS]
    if hardware:
        return _Finding("fail", f"clocks held down by {', '.join(hardware)}")
    if "sw_thermal" in events:
        return _Finding("warn", "clocks held down by sw_thermal")
    return None


def _clocks(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    return _GpuCheck(
        "gpu.clocks",
        f"none of {', '.join((*HW_SLOWDOWNS, 'sw_thermal'))}",
        read=_field("clock_events"),
        judge=_clock_finding,
        passed=lambda events: "without thermal, slowdown or power-brake clock events",
        unreported="clock event reasons not reported",
    )


def _temperature(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    limit = settings.get("max_gpu_temp_c")
    if limit is not None:
        limit = _number(settings, "max_gpu_temp_c")

    def read(gpu: dict[str, Any]) -> tuple[int, int | None] | None:
        temp, slowdown = gpu.get("temperature_c"), gpu.get("temperature_slowdown_c")
        if temp is None or (limit is None and slowdown is None):
            return None
        return (temp, slowdown)

    def judge(reading: tuple[int, int | None]) -> _Finding | None:
        temp, slowdown = reading
        if limit is not None:
            return None if temp <= limit else _Finding("fail", f"{temp} C (limit {limit:g} C)")
        assert slowdown is not None  # read() guarantees it when no limit is set
        if temp >= slowdown - SLOWDOWN_MARGIN_C:
            return _Finding(
                "warn", f"{temp} C, within {SLOWDOWN_MARGIN_C} C of its {slowdown} C slowdown"
            )
        return None

    def passed(readings: list[tuple[int, int | None]]) -> str:
        hottest = max(temp for temp, _ in readings)
        if limit is not None:
            return f"at or below {hottest} C (limit {limit:g} C)"
        slowdown = _same([s for _, s in readings])
        where = f"{slowdown} C" if slowdown is not None else "their thresholds"
        return f"at or below {hottest} C (slowdown at {where})"

    return _GpuCheck(
        "gpu.temperature",
        limit if limit is not None else f"below slowdown - {SLOWDOWN_MARGIN_C} C",
        read=read,
        judge=judge,
        passed=passed,
        unreported="GPU temperature or its slowdown threshold not reported",
        observe=lambda reading: reading[0],
    )


def _power(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    fraction = _number(settings, "max_power_fraction")

    def read(gpu: dict[str, Any]) -> tuple[float, float] | None:
        draw, limit = gpu.get("power_w"), gpu.get("power_limit_w")
        return None if draw is None or not limit else (draw, limit)

    def judge(reading: tuple[float, float]) -> _Finding | None:
        draw, limit = reading
        if draw <= fraction * limit:
            return None
        return _Finding("warn", f"drawing {draw:g} W, over {fraction:.0%} of its {limit:g} W limit")

    def passed(readings: list[tuple[float, float]]) -> str:
        limit = _same([cap for _, cap in readings])
        cap = f"a {limit:g} W limit" if limit is not None else "their limits"
        allowed = f" (warn over {fraction:.0%})" if fraction != 1 else ""
        return f"drawing at most {max(draw for draw, _ in readings):g} W of {cap}{allowed}"

    return _GpuCheck(
        "gpu.power",
        fraction,
        read=read,
        judge=judge,
        passed=passed,
        unreported="power draw or limit not reported",
        observe=lambda reading: reading[0],
    )


# --- NVLink and fabric ---------------------------------------------------------------------


def _nvlink_state(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    wanted = settings.get("nvlink_links")
    if wanted is not None:
        wanted = _count(settings, "nvlink_links")

    def read(gpu: dict[str, Any]) -> list[dict[str, Any]] | None:
        links = gpu.get("nvlink")
        # No populated link and no count demanded: a PCIe GPU without NVLink.
        return None if links is None or (not links and wanted is None) else links

    def judge(links: list[dict[str, Any]]) -> _Finding | None:
        down = [f"link {link['link']}" for link in links if not link.get("active")]
        active = len(links) - len(down)
        listed = f"; down: {', '.join(down)}" if down else ""
        if wanted is not None:
            if active == wanted:
                return None
            return _Finding("fail", f"{active} NVLink links active (expected {wanted}){listed}")
        if not down:
            return None
        return _Finding("fail", f"{active} of {len(links)} NVLink links active{listed}")

    def passed(readings: list[list[dict[str, Any]]]) -> str:
        count = _same([len(links) for links in readings])
        every = f"all {count}" if count is not None else "all their"
        return f"with {wanted if wanted is not None else every} NVLink links active"

    return _GpuCheck(
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


def _nvlink_errors(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck:
    limits = {
        "replay": _count(settings, "max_nvlink_replay"),
        "recovery": _count(settings, "max_nvlink_recovery"),
        "CRC": _count(settings, "max_nvlink_crc"),
    }

    def judge(links: list[dict[str, Any]]) -> _Finding | None:
        errors = [error for link in links for error in _link_errors(link, limits)]
        return _Finding("warn", "NVLink " + "; ".join(errors)) if errors else None

    return _GpuCheck(
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


def _fabric_finding(fabric: dict[str, Any]) -> _Finding | None:
    if fabric["state"] != "completed":
        return _Finding(
            "fail",
            f"NVLink fabric registration {fabric['state']} (is nvidia-fabricmanager running?)",
        )
    if fabric.get("status"):
        return _Finding(
            "fail", f"NVLink fabric registration failed (NVML status {fabric['status']})"
        )
    return None


def _fabric(gpus: list[dict[str, Any]], settings: dict[str, Any]) -> _GpuCheck | None:
    if settings.get("fabric_manager") == "off":
        return None

    def read(gpu: dict[str, Any]) -> dict[str, Any] | None:
        fabric = gpu.get("fabric")
        # Only GPUs on an NVSwitch fabric report a state other than not_supported.
        return None if not fabric or fabric.get("state") == "not_supported" else fabric

    return _GpuCheck(
        "gpu.fabric",
        "completed",
        read=read,
        judge=_fabric_finding,
        passed=lambda readings: "registered with the NVLink fabric",
        unreported=None,
    )


_Builder = Callable[[list[dict[str, Any]], dict[str, Any]], _GpuCheck | None]

# Results come out in this order.
_CHECKS: tuple[tuple[str, _Builder], ...] = (
    ("gpu.vbios", _vbios),
    (
        "gpu.persistence",
        _mode_check(
            "gpu.persistence",
            "persistence_mode",
            "persistence mode",
            _on_off_reading("persistence_mode"),
        ),
    ),
    ("gpu.mig", _mode_check("gpu.mig", "mig_mode", "MIG", _field("mig_mode"))),
    ("gpu.processes", _processes),
    ("gpu.ecc.mode", _mode_check("gpu.ecc.mode", "ecc", "ECC", _on_off_reading("ecc", "enabled"))),
    ("gpu.ecc.uncorrected", _ecc_uncorrected),
    ("gpu.ecc.correctable", _ecc_correctable),
    ("gpu.row_remap", _row_remap),
    ("gpu.retired_pages", _retired_pages),
    ("gpu.pcie.width", _pcie_width),
    ("gpu.pcie.gen", _pcie_gen),
    ("gpu.pcie.replays", _pcie_replays),
    ("gpu.clocks", _clocks),
    ("gpu.temperature", _temperature),
    ("gpu.power", _power),
    ("gpu.nvlink.state", _nvlink_state),
    ("gpu.nvlink.errors", _nvlink_errors),
    ("gpu.fabric", _fabric),
)

CHECK_IDS = tuple(check_id for check_id, _ in _CHECKS)


def evaluate_gpu_health(facts: dict[str, Any], expect: dict[str, Any]) -> list[Result]:
    """GPU health results in CHECK_IDS order; [] on a node without GPUs.

    Facts from the procfs fallback (no NVML readings) give one `gpu.health` skip.
    """
    gpus = facts.get("gpus")
    if gpus is None:
        error = (facts.get("probe_errors") or {}).get("gpu", "GPU list unknown")
        return [Result("gpu.health", "error", f"gpu probe failed: {error}")]
    if not gpus:
        return []
    if facts.get("gpu_source") != "nvml":
        reason = (facts.get("probe_errors") or {}).get("nvml")
        message = (
            NVML_SKIP_MESSAGE
            if reason is None
            else f"NVML not available ({reason}); GPU health checks skipped"
        )
        return [Result("gpu.health", "skip", message, reason)]
    # Idempotent when the caller merged them already; lets this stand alone.
    settings = {**HEALTH_DEFAULTS, **expect}
    results: list[Result] = []
    for check_id, build in _CHECKS:
        try:
            check = build(gpus, settings)
        except _BadExpectation as exc:
            results.append(Result(check_id, "error", str(exc)))
            continue
        if check is not None:
            results.extend(_run(check, gpus))
    return results
