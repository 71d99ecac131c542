"""The `facts` task: every probe, each isolated so one failure cannot hide the others."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from dcctl.node.probes import (
    dcgm,
    gpu,
    ib,
    kernel_log,
    modules,
    software,
    storage,
    system,
    versions,
)

DEFAULT_SCRATCH_DIR = "/var/tmp/dcctl"
# The controller sends expect.xid_window_h; this mirrors its HEALTH_DEFAULTS value, which the
# node cannot import (only dcctl.node is shipped).
DEFAULT_XID_WINDOW_H = 24


class TaskParamsError(ValueError):
    """The controller sent parameters the task cannot use (exit 2, like bad JSON)."""


# NamedTuple and plain threads, not dataclasses and concurrent.futures: those two imports
# (inspect, logging) were a fifth of the task's start-up, paid on every node at every run.
class Probe(NamedTuple):
    """A named probe and the facts keys it fills; they are set to None when it raises."""

    name: str
    keys: tuple[str, ...]
    collect: Callable[[dict[str, Any]], dict[str, Any]]


PROBES: tuple[Probe, ...] = (
    Probe("os", ("os",), lambda p: {"os": system.collect_os()}),
    Probe("kernel", ("kernel",), lambda p: {"kernel": system.collect_kernel()}),
    Probe("cpu", ("cpu",), lambda p: {"cpu": system.collect_cpu()}),
    Probe("memory", ("memory", "swap"), lambda p: system.collect_memory()),
    Probe("uptime", ("uptime_s",), lambda p: {"uptime_s": system.collect_uptime()}),
    Probe("python", ("python",), lambda p: {"python": system.collect_python()}),
    Probe("gpu", ("driver", "cuda", "gpus", "gpu_source"), lambda p: gpu.collect_gpu()),
    Probe("torch", ("torch",), lambda p: {"torch": software.collect_torch()}),
    Probe("fio", ("fio",), lambda p: {"fio": software.collect_fio()}),
    Probe("mounts", ("mounts",), lambda p: {"mounts": system.collect_mounts()}),
    Probe("scratch", ("scratch",), lambda p: {"scratch": system.collect_scratch(p["scratch_dir"])}),
    Probe("ib", ("ib",), lambda p: {"ib": ib.collect_ib()}),
    Probe(
        "kernel_log",
        ("kernel_log",),
        lambda p: {
            "kernel_log": kernel_log.collect_kernel_log(p.get("xid_window_h", DEFAULT_XID_WINDOW_H))
        },
    ),
    Probe("modules", ("modules",), lambda p: {"modules": modules.collect_modules()}),
    Probe(
        "nvswitch",
        ("nvswitch_count",),
        lambda p: {"nvswitch_count": modules.collect_nvswitch_count()},
    ),
    Probe(
        "fabric_manager",
        ("fabric_manager",),
        lambda p: {"fabric_manager": modules.collect_fabric_manager()},
    ),
    Probe("nvme", ("nvme",), lambda p: {"nvme": storage.collect_nvme()}),
    Probe("versions", ("versions",), lambda p: {"versions": versions.collect_versions()}),
    # No key at all unless the controller asked for a DCGM level (check --dcgm N).
    Probe("dcgm", ("dcgm",), lambda p: dcgm.collect_dcgm(p.get("dcgm_level"))),
)


def _params(raw: dict[str, Any]) -> dict[str, Any]:
    scratch_dir = raw.get("scratch_dir", DEFAULT_SCRATCH_DIR)
    if not isinstance(scratch_dir, str) or not scratch_dir.startswith("/"):
        raise TaskParamsError(f"scratch_dir must be an absolute path, got {scratch_dir!r}")
    dcgm_level = raw.get("dcgm_level")
    # `type(...) is int`: JSON true and 1.0 compare equal to 1 but are not a level.
    if dcgm_level is not None and not (type(dcgm_level) is int and dcgm_level in dcgm.DCGM_LEVELS):
        raise TaskParamsError(f"dcgm_level must be 1, 2 or 3, got {dcgm_level!r}")
    xid_window_h = raw.get("xid_window_h", DEFAULT_XID_WINDOW_H)
    if type(xid_window_h) not in (int, float) or not 0 < xid_window_h < float("inf"):
        raise TaskParamsError(f"xid_window_h must be a positive number, got {xid_window_h!r}")
    return {"scratch_dir": scratch_dir, "dcgm_level": dcgm_level, "xid_window_h": xid_window_h}


def collect_facts(params: dict[str, Any], probes: Sequence[Probe] = PROBES) -> dict[str, Any]:
    """Run every probe; a probe that raises leaves its keys None and a line in probe_errors.

    A probe may also return its own "probe_errors" (a source it fell back from).
    """
    facts: dict[str, Any] = {}
    errors: dict[str, str] = {}
    # All at once: most probes read a file in microseconds, but a few wait on a child
    # process or the driver (DCGM takes minutes),
    # and the task should take as long as the slowest probe, not the sum of them.
    # What a probe whose thread died without returning (SystemExit in a library) reports.
    outcomes: list[tuple[dict[str, Any], str | None]] = [
        (dict.fromkeys(probe.keys), "probe did not finish") for probe in probes
    ]

    def run(index: int, probe: Probe) -> None:
        outcomes[index] = _run_probe(probe, params)

    threads = [
        threading.Thread(target=run, args=(index, probe), name=f"probe-{probe.name}")
        for index, probe in enumerate(probes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for probe, (found, error) in zip(probes, outcomes):  # noqa: B905 - zip(strict=) is 3.10+
        if error is not None:
            errors[probe.name] = error
        errors.update(found.pop("probe_errors", None) or {})
        facts.update(found)
    if errors:
        facts["probe_errors"] = errors
    return facts


def _run_probe(probe: Probe, params: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    try:
        return probe.collect(params), None
    except Exception as exc:  # isolation is the point: report it, keep going
        return dict.fromkeys(probe.keys), f"{type(exc).__name__}: {exc}"


def facts_task(raw_params: dict[str, Any]) -> dict[str, Any]:
    """Task entry point: `runtime.pyz facts '{"scratch_dir": "/var/tmp/dcctl"}'`."""
    return collect_facts(_params(raw_params))
