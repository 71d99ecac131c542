"""Judge a node's facts against the inventory's `expect`: one Result per expectation.

Facts nobody set an expectation for are reported, not judged, with one exception: a node
with no NVIDIA driver, where nothing demands GPUs, gets a `gpu.present` skip so the report
says why no GPU line appears.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.common import ib_ports, normalize_mountpoint, port_name, probe_error
from dcctl.evaluate.registry import Check, FactCheck, check, run_checks
from dcctl.evaluate.result import Result, Status
from dcctl.evaluate.versions import Requirement
from dcctl.inventory.expect_keys import EXPECT_KEYS, Expectations, expectations

NO_DRIVER = "NVIDIA driver not loaded"
GPU_SKIP_MESSAGE = "no NVIDIA driver loaded; GPU checks skipped"


def _judged(ok: bool, result_id: str, message: str, observed: Any, expected: Any) -> Result:
    status: Status = "pass" if ok else "fail"
    return Result(result_id, status, message, observed, expected)


def _glob_match(pattern: str, text: str) -> bool:
    # Case-insensitive: "*h100*" written by hand should match "NVIDIA H100 80GB HBM3".
    return fnmatchcase(text.lower(), pattern.lower())


def _version_check(
    result_id: str, what: str, observed: str | None, requirement: Requirement
) -> Result:
    expected = str(requirement)
    if observed is None:
        return Result(result_id, "fail", f"{what} unknown (expected {requirement})", None, expected)
    try:
        ok = requirement.satisfied_by(observed)
    except ValueError:
        message = f"cannot read {what} {shown(observed)!r} as a version"
        return Result(result_id, "error", message, observed, expected)
    message = f"{what} {shown(observed)} (expected {requirement})"
    return _judged(ok, result_id, message, observed, expected)


def _driver_loaded(facts: dict[str, Any]) -> bool:
    return facts.get("gpu_source") not in (None, "none")


def _check_os(facts: dict[str, Any], expected: str) -> list[Result]:
    pretty = (facts.get("os") or {}).get("pretty_name")
    if pretty is None:
        message = f"OS unknown: no PRETTY_NAME in os-release (expected {expected})"
        return [Result("os.release", "fail", message, None, expected)]
    ok = _glob_match(expected, pretty)
    message = f"OS {shown(pretty)} (expected {expected})"
    return [_judged(ok, "os.release", message, pretty, expected)]


def _check_kernel(facts: dict[str, Any], expected: Requirement) -> list[Result]:
    return [_version_check("kernel.version", "kernel", facts.get("kernel"), expected)]


def _no_driver(result_id: str, expected: Any, shown: str) -> Result:
    return Result(result_id, "fail", f"{NO_DRIVER} (expected {shown})", None, expected)


def _check_driver(facts: dict[str, Any], expected: Requirement) -> list[Result]:
    if not _driver_loaded(facts):
        return [_no_driver("driver.version", str(expected), str(expected))]
    return [_version_check("driver.version", "driver", facts.get("driver"), expected)]


def _check_cuda(facts: dict[str, Any], expected: Requirement) -> list[Result]:
    if not _driver_loaded(facts):
        return [_no_driver("cuda.version", str(expected), f"CUDA {expected}")]
    return [_version_check("cuda.version", "CUDA driver version", facts.get("cuda"), expected)]


def _check_gpu_count(facts: dict[str, Any], want: int) -> list[Result]:
    if want > 0 and not _driver_loaded(facts):
        return [_no_driver("gpu.count", want, f"{want} GPUs")]
    count = len(facts.get("gpus") or [])
    message = f"{count} GPUs (expected {want})"
    return [_judged(count == want, "gpu.count", message, count, want)]


def _check_gpu_model(facts: dict[str, Any], expected: str) -> list[Result]:
    if not _driver_loaded(facts):
        return [_no_driver("gpu.model", expected, expected)]
    listed_gpus = facts.get("gpus") or []
    if not listed_gpus:
        return [Result("gpu.model", "fail", f"no GPUs found (expected {expected})", [], expected)]
    # A GPU NVML could not read has no name: gpu.health names it; judge the others.
    gpus = [gpu for gpu in listed_gpus if gpu.get("name") is not None]
    if not gpus:
        message = f"GPU model unknown: no GPU could be read (expected {expected})"
        return [Result("gpu.model", "fail", message, [], expected)]
    names = sorted({str(gpu.get("name")) for gpu in gpus})
    wrong = [gpu for gpu in gpus if not _glob_match(expected, str(gpu.get("name")))]
    if wrong:
        found = (f"GPU {shown(gpu.get('index'))} is {gpu.get('name')}" for gpu in wrong)
        message = f"{listed(found, len(wrong))} (expected {expected})"
        return [Result("gpu.model", "fail", message, names, expected)]
    message = f"{_gpu_summary(gpus)} (expected {expected})"
    return [Result("gpu.model", "pass", message, names, expected)]


def _check_memory(facts: dict[str, Any], want: float) -> list[Result]:
    total = (facts.get("memory") or {}).get("total_gb")
    if total is None:
        message = f"memory size unknown (expected at least {want:g} GiB)"
        return [Result("memory.total", "fail", message, None, want)]
    message = f"memory {total:g} GiB (expected at least {want:g} GiB)"
    return [_judged(total >= want, "memory.total", message, total, want)]


def _check_swap(facts: dict[str, Any], want: str) -> list[Result]:
    swap = facts.get("swap")
    if swap is None:
        return [Result("swap.state", "fail", f"swap unknown (expected {want})", None, want)]
    state = "on" if swap.get("total_gb", 0) > 0 else "off"
    message = f"swap {state} (expected {want})"
    if state == "on":
        size = f"{swap['total_gb']:g} GiB, {swap.get('used_gb', 0):g} GiB used"
        message = f"swap on: {size} (expected {want})"
    return [_judged(state == want, "swap.state", message, state, want)]


def _check_mounts(facts: dict[str, Any], wanted: list[str]) -> list[Result]:
    if facts.get("mounts") is None:
        error = probe_error(facts, "mounts") or "mount table unknown: no /proc/mounts"
        return [Result(f"mounts.present:{p}", "error", error, None, p) for p in wanted]
    # Later entries shadow earlier ones on the same mount point, as the kernel shows them.
    table = {normalize_mountpoint(m["mountpoint"]): m for m in facts["mounts"]}
    results = []
    for path in wanted:
        result_id = f"mounts.present:{path}"
        mount = table.get(normalize_mountpoint(path))
        if mount is None:
            results.append(Result(result_id, "fail", f"{path} not mounted", None, path))
        else:
            message = f"{path} mounted ({shown(mount['fstype'])} from {shown(mount['device'])})"
            results.append(Result(result_id, "pass", message, mount, path))
    return results


def _check_ib_ports(facts: dict[str, Any], want: int) -> list[Result]:
    ports = ib_ports(facts)
    active = [p for p in ports if p.get("state") == "ACTIVE"]
    message = f"{len(active)} of {len(ports)} InfiniBand ports ACTIVE (expected {want})"
    down = [p for p in ports if p.get("state") != "ACTIVE"]
    if down and len(active) < want:
        named = (
            f"{port_name(p)} {shown(p.get('state'))} ({shown(p.get('phys_state'))})" for p in down
        )
        message += f"; not active: {listed(named, len(down))}"
    return [_judged(len(active) >= want, "ib.ports", message, len(active), want)]


def _slow_port(port: dict[str, Any]) -> str:
    rate = port.get("rate_gbps")
    text = (
        f"{port_name(port)} at {rate:g} Gb/s"
        if rate is not None
        else f"{port_name(port)} rate unknown"
    )
    return text if port.get("state") == "ACTIVE" else f"{text} ({shown(port.get('state'))})"


def _check_ib_rate(facts: dict[str, Any], want: int) -> list[Result]:
    ports = ib_ports(facts)
    if not ports:
        message = f"no InfiniBand ports found (expected {want:g} Gb/s)"
        return [Result("ib.rate", "fail", message, None, want)]
    rates = [p.get("rate_gbps") for p in ports]
    slowest = min((r for r in rates if r is not None), default=None)
    slow = [p for p in ports if p.get("rate_gbps") is None or p["rate_gbps"] < want]
    if not slow:
        message = (
            f"{len(ports)} InfiniBand ports at {slowest:g} Gb/s or faster (expected {want:g} Gb/s)"
        )
        return [Result("ib.rate", "pass", message, slowest, want)]
    message = f"{listed(map(_slow_port, slow), len(slow))} (expected {want:g} Gb/s on every port)"
    return [Result("ib.rate", "fail", message, slowest, want)]


# Results come out in this order.
CHECKS: tuple[Check[FactCheck], ...] = (
    check("os.release", _check_os, "os", fact="os", probes=("os",)),
    check("kernel.version", _check_kernel, "kernel", fact="kernel", probes=("kernel",)),
    check("driver.version", _check_driver, "driver", fact="driver", probes=("gpu",)),
    check("cuda.version", _check_cuda, "cuda", fact="cuda", probes=("gpu", "nvml")),
    check("gpu.count", _check_gpu_count, "gpu_count", fact="gpus", probes=("gpu",)),
    check("gpu.model", _check_gpu_model, "gpu_model", fact="gpus", probes=("gpu",)),
    check("memory.total", _check_memory, "min_memory_gb", fact="memory", probes=("memory",)),
    check("swap.state", _check_swap, "swap", fact="swap", probes=("memory",)),
    # A failed mounts probe is reported per path by the check itself.
    check("mounts.present", _check_mounts, "mounts"),
    check("ib.ports", _check_ib_ports, "ib_ports", fact="ib", probes=("ib",)),
    check("ib.rate", _check_ib_rate, "ib_rate", fact="ib", probes=("ib",)),
)

_GPU_DEMANDS = ("driver", "cuda", "gpu_model")


def _demands_gpus(expect: Expectations) -> bool:
    # Read as given: a gpu_count of the wrong kind is gpu.count's error, not a demand.
    count = expect.given.get("gpu_count")
    wants_count = isinstance(count, int) and not isinstance(count, bool) and count > 0
    return wants_count or any(key in expect.given for key in _GPU_DEMANDS)


def _unknown_key(key: str, value: Any) -> Result:
    close = difflib.get_close_matches(key, list(EXPECT_KEYS), n=1)
    message = f"unknown expectation {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
    return Result(f"expect.{key}", "error", message, None, value)


def evaluate_facts(facts: dict[str, Any], expect: Mapping[str, Any] | Expectations) -> list[Result]:
    """One Result per expectation (one per path for `mounts`), in CHECKS order.

    Unknown keys (the inventory validator should have refused them) become `error` results.
    """
    settings = expectations(expect)
    results = [_unknown_key(key, value) for key, value in settings.unknown.items()]
    for row in CHECKS:
        skip = row.id == "driver.version" and not _demands_gpus(settings)
        if skip and _no_driver_and_no_error(facts):
            results.append(Result("gpu.present", "skip", GPU_SKIP_MESSAGE))
        results.extend(run_checks((row,), facts, settings))
    return results


def _no_driver_and_no_error(facts: dict[str, Any]) -> bool:
    return facts.get("gpu_source") == "none" and "gpu" not in (facts.get("probe_errors") or {})


def _gpu_summary(gpus: list[dict[str, Any]]) -> str:
    counts = Counter(str(gpu.get("name") or "unreadable GPU") for gpu in gpus)
    return listed((f"{count}x {name}" for name, count in sorted(counts.items())), len(counts))


def summarize_facts(facts: dict[str, Any]) -> dict[str, str]:
    """Short display strings {os, kernel, driver, cuda, gpus} for one console table row."""
    gpu_failed = "gpu" in (facts.get("probe_errors") or {})
    absent = "unknown" if gpu_failed else "none"
    gpus = facts.get("gpus")
    return {
        "os": shown((facts.get("os") or {}).get("pretty_name") or "unknown"),
        "kernel": shown(facts.get("kernel") or "unknown"),
        "driver": shown(facts.get("driver") or absent),
        "cuda": shown(facts.get("cuda") or ("unknown" if _driver_loaded(facts) else absent)),
        "gpus": _gpu_summary(gpus) if gpus else ("unknown" if gpus is None else "none"),
    }
