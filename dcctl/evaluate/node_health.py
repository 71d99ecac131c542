"""Node health beyond the GPUs themselves: the kernel log, kernel modules, the fabric manager.

Judged on every node with the hardware, whether or not the inventory mentions them (the
thresholds have defaults in the expect table). A node without NVIDIA hardware gets no GPU results at
all: a CPU node's report should not fill with skips about GPUs it never had.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dcctl.evaluate.bounds import (
    MAX_MESSAGE_CHARS,
    MAX_RESULTS_PER_CHECK,
    fold,
    listed,
    node_count,
    shown,
)
from dcctl.evaluate.common import ib_ports, probe_error
from dcctl.evaluate.gpus import BusIndex, bus_index, gpu_at, gpu_label, gpu_ref
from dcctl.evaluate.registry import Check, FactCheck, check, run_checks
from dcctl.evaluate.result import Result, Status
from dcctl.evaluate.xids import XID_154_FAILS, XIDS, sxid_status
from dcctl.inventory.expect_keys import Expectations, expectations

NO_MODULE_LIST = "loaded modules unknown: no /proc/modules"
# How to let a non-root user read the kernel log (journalctl -k, else dmesg).
KERNEL_LOG_ACCESS = (
    "run dcctl as root, or set kernel.dmesg_restrict=0 or add the user to the systemd-journal group"
)
# What follows the severity word of an SXid line is its description.
_SEVERITY_RE = re.compile(r"(?:Non-fatal|Fatal),\s*")


def _unknown(result_id: str, facts: dict[str, Any], probe: str, why: str) -> Result:
    """A fact is missing: `error` when its probe broke, `skip` with the reason otherwise."""
    error = probe_error(facts, probe)
    if error is not None:
        return Result(result_id, "error", error)
    return Result(result_id, "skip", why)


def _has_nvidia(facts: dict[str, Any]) -> bool:
    driver = facts.get("gpu_source") not in (None, "none")
    return driver or bool(facts.get("gpus")) or (facts.get("nvswitch_count") or 0) > 0


def _times(count: int) -> str:
    return f" x{count}" if count > 1 else ""


def _window(facts: dict[str, Any], log: dict[str, Any]) -> str:
    """The span of log searched. journalctl -k and dmesg hold the current boot only, so on a
    node booted less than window_h ago (or whose uptime is unknown) it starts at the boot."""
    hours = float(log.get("window_h", 0))
    uptime = facts.get("uptime_s")
    if isinstance(uptime, (int, float)) and uptime >= hours * 3600:
        return f"in the last {hours:g} h"
    return f"since boot, at most {hours:g} h"


def _counted(log: dict[str, Any], kind: str, fields: tuple[str, ...]) -> Counter[tuple[Any, ...]]:
    """Events per key, including those the node only counted (`omitted`)."""
    counts: Counter[tuple[Any, ...]] = Counter()
    for event in log.get(kind) or []:
        counts[tuple(event.get(f) for f in fields)] += 1
    for entry in _omitted(log, kind):
        counts[tuple(entry.get(f) for f in fields)] += node_count(entry.get("count"))
    return counts


def _omitted(log: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Keys whose older events the node only counted (its per-key cap)."""
    return [entry for entry in log.get("omitted") or [] if entry.get("kind") == kind]


def _code(value: Any) -> int:
    """An XID or SXid number for sorting; a key the node sent without one sorts first."""
    return value if type(value) is int else -1


def _logs_xids(log: dict[str, Any]) -> bool:
    """The log names an XID, or an NVRM fault that lost a GPU: listed, or only counted."""
    return any(
        log.get(kind) or _omitted(log, kind) or _left_out(log, kind)
        for kind in ("xids", "nvrm_faults")
    )


def _latest(log: dict[str, Any], kind: str, fields: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    """The last listed event per key (events are in log order)."""
    return {tuple(e.get(f) for f in fields): e for e in log.get(kind) or []}


def _left_out(log: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Groups of events the node only counted: keys past its cap, per XID or SXid number."""
    return [entry for entry in log.get("left_out") or [] if entry.get("kind") == kind]


def _readable_log(facts: dict[str, Any]) -> tuple[dict[str, Any] | None, Result | None]:
    """The kernel_log fact when it was read, else the result that says why not."""
    log = facts.get("kernel_log")
    if log is None:
        return None, _unknown("kernel.xid", facts, "kernel_log", "kernel log not collected")
    # An XID the node sent is judged even beside a claim that the log was unreadable.
    if log.get("source") == "none" and not _logs_xids(log):
        why = shown(log.get("error") or "no source")
        message = f"kernel log unreadable ({why}): XIDs not checked; {KERNEL_LOG_ACCESS}"
        return None, Result("kernel.xid", "warn", message, None, "a readable kernel log")
    return log, None


@dataclass(frozen=True)
class _XidLog:
    """What judging each XID key needs, gathered once per host."""

    window: str
    gpus: BusIndex
    latest: dict[Any, dict[str, Any]]
    overrides: dict[int, str]

    def gpu(self, pci: str) -> dict[str, Any] | None:
        # XID lines name the GPU by bus:device ("0000:18:00"); GPUs are function 0.
        return gpu_at(self.gpus, pci if "." in pci else f"{pci}.0")


def _xid_status(xid: Any, text: Any, overrides: dict[int, str]) -> Status | None:
    """The XID's status: the inventory's override, else the catalog's (xids.ACTION_STATUS),
    warn for an XID not in the table; None for one only counted (not judged)."""
    override = overrides.get(xid) if type(xid) is int else None
    if override is not None:
        return None if override in ("count", "ignore") else override  # type: ignore[return-value]
    info = XIDS.get(xid)
    if info is None:
        return "warn"
    # "changed from 0x0 (None) to 0x1 (GPU Reset Required)": the action after " to " counts.
    needed = str(text or "").rpartition(" to ")[2]
    if info.action == "XID_154" and any(word in needed for word in XID_154_FAILS):
        return "fail"
    return None if info.status == "count" else info.status


def _xid_result(
    xids: _XidLog, key: tuple[Any, ...], count: int, status: Status, gpu: dict[str, Any] | None
) -> Result:
    xid, pci = key
    where = gpu_label(gpu) if gpu is not None else f"PCI {shown(pci)}"
    head = f"{where}: XID {shown(xid)}{_times(count)} {xids.window}"
    last = shown(xids.latest.get(key, {}).get("text"), MAX_MESSAGE_CHARS)
    observed = {"xid": xid, "pci": pci, "count": count, "last": last}
    ref = gpu_ref(gpu) if gpu is not None else None
    info = XIDS.get(xid)
    if type(xid) is int and xid in xids.overrides:
        message = f"{head}: {xids.overrides[xid]} (expect.xid_status)"
        if info is not None:
            message = f"{head}: {info.meaning}; {xids.overrides[xid]} (expect.xid_status)"
    elif info is None:
        message = f"{head}: not in dcctl's XID table, see NVIDIA's Xid catalog"
    elif info.action:
        message = f"{head}: {info.meaning}; NVIDIA's Xid catalog: {info.action}"
    else:
        message = f"{head}: {info.meaning}"
    return Result("kernel.xid", status, message, observed, "no hardware XIDs", gpu=ref)


def _gpu_order(gpu: dict[str, Any] | None, key: tuple[Any, ...]) -> tuple[bool, int, str, int]:
    """Known GPUs by index first, then addresses that match no GPU."""
    xid, pci = key
    index = (gpu or {}).get("index")
    if isinstance(index, int):
        return (False, index, str(pci), _code(xid))
    return (True, 0, str(pci), _code(xid))


def _left_out_xids(
    log: dict[str, Any], ignored: set[int], overrides: dict[int, str]
) -> tuple[Counter[Status], list[Any]]:
    """Statuses of the XID keys the node only counted (by key), and the application XIDs."""
    tally: Counter[Status] = Counter()
    application = []
    for entry in _left_out(log, "xids"):
        xid = entry.get("xid")
        if xid in ignored:
            continue
        # No number: the node had too many to list; any of them may be a hardware XID. The GPU
        # of a left-out key is unknown, so a row remap counts as not settled.
        status = "fail" if xid is None else _xid_status(xid, None, overrides)
        if status is None:
            application.append(xid)
        else:
            tally[status] += node_count(entry.get("keys"))
    return tally, application


# NVRM messages that lose a GPU without an XID line (the node's `nvrm_faults`): as grave as
# XID 79 (fallen off the bus) or XID 143 (GPU initialization failure), so they fail. Drivers
# that print XID 79 follow it with "NVRM: GPU <pci>: GPU has fallen off the bus.": a GPU with
# an XID 79 in the window is reported by that XID alone, and ignoring XID 79 ignores both.
FALLEN_OFF_BUS_XID = 79
NVRM_FAULTS = {
    "fallen_off_bus": "GPU has fallen off the bus (NVRM message, no XID)",
    "init_failed": "the driver could not initialize the GPU (RmInitAdapter failed)",
}


def _bus_device(pci: Any) -> str:
    """ "0000:5d:00.0" and "0000:5d:00" (an XID line's form) -> "0000:5d:00"."""
    return str(pci).lower().rpartition(".")[0] if "." in str(pci) else str(pci).lower()


def _nvrm_fault_results(
    facts: dict[str, Any], log: dict[str, Any], xid_keys: set[tuple[Any, ...]], ignored: set[int]
) -> list[Result]:
    """One `fail` per (fault, GPU) the log names, known GPUs by index first."""
    window = _window(facts, log)
    gpus = bus_index(facts)
    latest = _latest(log, "nvrm_faults", ("fault", "pci"))
    fell = {_bus_device(pci) for xid, pci in xid_keys if xid == FALLEN_OFF_BUS_XID}
    found = []
    for key, count in _counted(log, "nvrm_faults", ("fault", "pci")).items():
        fault, pci = key
        if fault == "fallen_off_bus" and (
            FALLEN_OFF_BUS_XID in ignored or _bus_device(pci) in fell
        ):
            continue
        gpu = gpu_at(gpus, str(pci)) if isinstance(pci, str) else None
        where = gpu_label(gpu) if gpu is not None else f"PCI {shown(pci)}"
        what = NVRM_FAULTS.get(str(fault), f"NVRM fault {shown(fault)}")
        last = shown(latest.get(key, {}).get("text"), MAX_MESSAGE_CHARS)
        observed = {"fault": fault, "pci": pci, "count": count, "last": last}
        message = f"{where}: {what}{_times(count)} {window}"
        ref = gpu_ref(gpu) if gpu is not None else None
        result = Result("kernel.xid", "fail", message, observed, "no hardware XIDs", gpu=ref)
        found.append((_gpu_order(gpu, (str(fault), pci)), result))
    found.sort(key=lambda item: item[0])
    return [result for _, result in found]


def _check_xids(
    facts: dict[str, Any], overrides: dict[int, str], ignore_xids: list[int]
) -> list[Result]:
    """XIDs and the NVRM faults that lose a GPU, on a node with NVIDIA hardware or a log that
    names one; a warning when the log could not be read there."""
    nvidia = _has_nvidia(facts)
    log, unreadable = _readable_log(facts)
    if log is None:
        return [unreadable] if unreadable is not None and nvidia else []
    # XIDs are judged on a node with no NVIDIA facts too: a GPU that fell off the bus may leave
    # a driver that no longer loads, and the XID it logged is what explains that.
    if not (nvidia or _logs_xids(log)):
        return []
    return _judge_xids(facts, log, overrides, ignore_xids)


def _judge_xids(
    facts: dict[str, Any], log: dict[str, Any], overrides: dict[int, str], ignore_xids: list[int]
) -> list[Result]:
    ignored = set(ignore_xids) | {xid for xid, status in overrides.items() if status == "ignore"}
    latest = _latest(log, "xids", ("xid", "pci"))
    xids = _XidLog(_window(facts, log), bus_index(facts), latest, overrides)
    counts = _counted(log, "xids", ("xid", "pci"))
    faults = _nvrm_fault_results(facts, log, set(counts), ignored)
    judged = []
    application = []
    for key, count in counts.items():
        if key[0] in ignored:
            continue
        gpu = xids.gpu(str(key[1]))
        status = _xid_status(key[0], latest.get(key, {}).get("text"), overrides)
        if status is None:
            application.append(key[0])
        else:
            judged.append((_gpu_order(gpu, key), key, count, status, gpu))
    judged.sort(key=lambda item: item[0])
    # Messages only for the keys shown: the others are only counted, by status.
    shown_keys = judged[: max(0, MAX_RESULTS_PER_CHECK - len(faults))]
    results = faults + [_xid_result(xids, *item[1:]) for item in shown_keys]
    rest, left_application = _left_out_xids(log, ignored, overrides)
    rest.update(item[3] for item in judged[len(shown_keys) :])
    lost = sum(node_count(e.get("keys")) for e in _left_out(log, "nvrm_faults"))
    if lost:
        rest["fail"] += lost
    if results or rest:
        return fold("kernel.xid", results, rest, "no hardware XIDs")
    codes = sorted({*application, *left_application}, key=str)
    message = f"no hardware XIDs {xids.window}"
    if codes:
        message += f" (application XIDs not judged: {listed(map(str, codes), len(codes))})"
    return [Result("kernel.xid", "pass", message, 0, "no hardware XIDs")]


def _sxid_result(
    key: tuple[Any, ...], count: int, fatal: bool, event: dict[str, Any], window: str
) -> Result:
    sxid, device = key
    detail = _SEVERITY_RE.split(shown(event.get("text", "")), maxsplit=1)[-1]
    switch = shown(event.get("switch", "NVSwitch"))
    message = (
        f"{switch} ({shown(device)}): SXid {shown(sxid)}{_times(count)} "
        f"({'fatal' if fatal else 'non-fatal'}) {window}: {detail}"
    )
    observed = {"sxid": sxid, "device": device, "count": count, "fatal": fatal}
    # Keys whose status is "count" never get here (see _check_sxids).
    status: Status = "fail" if sxid_status(sxid, fatal) == "fail" else "warn"
    return Result("kernel.sxid", status, message, observed, "no SXids")


def _fatal_sxids(log: dict[str, Any]) -> set[tuple[Any, ...]]:
    """SXid keys with a fatal event, listed or among those the node only counted."""
    counted = [*(log.get("sxids") or []), *_omitted(log, "sxids")]
    return {(e.get("sxid"), e.get("device")) for e in counted if e.get("fatal")}


def _check_sxids(facts: dict[str, Any]) -> list[Result]:
    log, _ = _readable_log(facts)
    if log is None:
        return []
    counts = _counted(log, "sxids", ("sxid", "device"))
    fatal = _fatal_sxids(log)
    latest = _latest(log, "sxids", ("sxid", "device"))
    window = _window(facts, log)
    keys = sorted(counts, key=lambda k: (str(k[1]), _code(k[0])))
    # SXids the Fabric Manager guide calls corrected or safe to ignore: counted, not judged.
    corrected = [k for k in keys if sxid_status(k[0], k in fatal) == "count"]
    judged = [k for k in keys if sxid_status(k[0], k in fatal) != "count"]
    results = [
        _sxid_result(key, counts[key], key in fatal, latest.get(key, {}), window)
        for key in judged[:MAX_RESULTS_PER_CHECK]
    ]
    rest: Counter[Status] = Counter(
        "fail" if sxid_status(key[0], key in fatal) == "fail" else "warn"
        for key in judged[MAX_RESULTS_PER_CHECK:]
    )
    for entry in _left_out(log, "sxids"):
        status = sxid_status(entry.get("sxid"), bool(entry.get("fatal")))
        if status != "count":
            rest["fail" if status == "fail" else "warn"] += node_count(entry.get("keys"))
    if results or rest:
        return fold("kernel.sxid", results, rest, "no SXids")
    if corrected or (facts.get("nvswitch_count") or 0) > 0:
        message = f"no NVSwitch SXids {window}"
        if corrected:
            message = f"no NVSwitch SXids needing action {window}"
            per_code: Counter[str] = Counter()
            for key in corrected:
                per_code[shown(key[0])] += counts[key]
            seen = [f"{code}{_times(n)}" for code, n in sorted(per_code.items())]
            message += f" (corrected or safe to ignore: {listed(seen, len(seen))})"
        return [Result("kernel.sxid", "pass", message, 0, "no SXids")]
    return []


def _check_mlx5_pcie(facts: dict[str, Any]) -> list[Result]:
    log, _ = _readable_log(facts)
    if log is None:
        return []
    results = []
    expected = "full PCIe bandwidth"
    for _, event in sorted(_latest(log, "pcie_bandwidth_limited", ("device",)).items()):
        # "mlx5_core 0000:1a:00.0: 63.008 Gb/s available PCIe bandwidth, limited by ..."
        detail = shown(str(event.get("text", "")).partition(": ")[2])
        message = f"mlx5 NIC {shown(event.get('device'))}: {detail}"
        observed = {"device": event.get("device"), "text": shown(event.get("text"))}
        results.append(Result("kernel.mlx5_pcie", "warn", message, observed, expected))
    left_out = sum(node_count(e.get("keys")) for e in _left_out(log, "pcie_bandwidth_limited"))
    return fold("kernel.mlx5_pcie", results, Counter({"warn": left_out}), expected)


def _check_nouveau(facts: dict[str, Any]) -> list[Result]:
    nvidia = _has_nvidia(facts)
    modules = facts.get("modules")
    if modules is None:
        return [_unknown("modules.nouveau", facts, "modules", NO_MODULE_LIST)] if nvidia else []
    # nouveau only loads for an NVIDIA device, so where it is loaded the node has one, even
    # when (because nouveau holds it) the nvidia driver could not load and facts show no GPU.
    if "nouveau" in modules:
        message = "nouveau is loaded: it holds the GPUs the nvidia driver needs (blacklist it)"
        return [Result("modules.nouveau", "fail", message, True, "not loaded")]
    if not nvidia:
        return []
    return [Result("modules.nouveau", "pass", "nouveau not loaded", False, "not loaded")]


def _check_peermem(facts: dict[str, Any], mode: str) -> list[Result]:
    ports = len(ib_ports(facts))
    if not _has_nvidia(facts) or mode == "off" or (mode == "auto" and ports == 0):
        return []
    modules = facts.get("modules")
    if modules is None:
        return [_unknown("modules.peermem", facts, "modules", NO_MODULE_LIST)]
    why = f"{ports} InfiniBand ports" if ports else "required by the inventory"
    if "nvidia_peermem" in modules:
        message = f"nvidia_peermem loaded ({why})"
        return [Result("modules.peermem", "pass", message, True, "loaded")]
    message = (
        f"nvidia_peermem not loaded ({why}): GPUDirect RDMA needs it unless the stack uses "
        "dma-buf instead (recent drivers with the open kernel modules, Linux >= 5.12); "
        "if it does, set `nvidia_peermem: off` under expect, else NCCL stages GPU traffic "
        "through host memory"
    )
    return [Result("modules.peermem", "fail", message, False, "loaded")]


def _check_fabric_manager(facts: dict[str, Any], mode: str) -> list[Result]:
    switches = facts.get("nvswitch_count") or 0
    if not _has_nvidia(facts) or mode == "off" or (mode == "auto" and switches == 0):
        return []
    why = f"{switches} NVSwitches" if switches else "required by the inventory"
    state = facts.get("fabric_manager")
    if state is None:
        error = probe_error(facts, "fabric_manager")
        if error is not None:
            return [Result("fabric.manager", "error", error)]
        message = f"fabric manager state unknown: no systemctl to ask ({why})"
        return [Result("fabric.manager", "fail", message, None, "active")]
    if state == "active":
        return [Result("fabric.manager", "pass", f"fabric manager active ({why})", state, "active")]
    message = f"fabric manager {state} ({why}): GPUs cannot use NVLink until it runs"
    return [Result("fabric.manager", "fail", message, state, "active")]


# Results come out in this order.
CHECKS: tuple[Check[FactCheck], ...] = (
    check("kernel.xid", _check_xids, "xid_status", "ignore_xids"),
    check("kernel.sxid", _check_sxids),
    check("kernel.mlx5_pcie", _check_mlx5_pcie),
    check("modules.nouveau", _check_nouveau),
    check("modules.peermem", _check_peermem, "nvidia_peermem"),
    check("fabric.manager", _check_fabric_manager, "fabric_manager"),
)


def evaluate_node_health(
    facts: dict[str, Any], expect: Mapping[str, Any] | Expectations
) -> list[Result]:
    """kernel.xid, kernel.sxid, kernel.mlx5_pcie, modules.nouveau, modules.peermem and
    fabric.manager results, in that order; only findings and, where judged, a pass."""
    return run_checks(CHECKS, facts, expectations(expect))
