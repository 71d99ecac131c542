"""InfiniBand link health, NVMe count, scratch space and read-only mounts.

These complement check.py's ib.ports / ib.rate / mounts.present / swap.state: a port that is
down fails ib.state here and ib.ports there; both name it. A port file the kernel refused to
read (the probe's per-port `errors`) is an error where it hides something: ib.state when the
state itself is unknown, ib.read when an ACTIVE port's rate or link layer is. Thresholds are
read through the expect table, so max_ib_link_downed always has its default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.common import ib_ports, normalize_mountpoint, port_name, probe_error
from dcctl.evaluate.registry import Check, FactCheck, check, run_checks
from dcctl.evaluate.result import Result, Status
from dcctl.inventory.expect_keys import Expectations, expectations

IB_STATE_OK = ("ACTIVE", "LinkUp")
# Only controllers in this box count: an NVMe-oF namespace (tcp, rdma, fc) is remote storage.
LOCAL_NVME_TRANSPORTS = (None, "pcie")


def _port_errors(port: dict[str, Any]) -> dict[str, Any]:
    errors = port.get("errors")
    return errors if isinstance(errors, dict) else {}


def _unreadable(port: dict[str, Any], names: tuple[str, ...]) -> str | None:
    """ "state unreadable (EINVAL: Invalid argument)" for the named reads that failed."""
    errors = _port_errors(port)
    found = [f"{name} unreadable ({shown(errors[name])})" for name in names if errors.get(name)]
    return ", ".join(found) or None


def _ib_state(facts: dict[str, Any]) -> list[Result]:
    """FAIL per port not ACTIVE/LinkUp; ERROR per port whose state could not be read; one
    PASS when all are up; nothing without IB."""
    expected = "/".join(IB_STATE_OK)
    if "ib" in facts and facts["ib"] is None:
        error = probe_error(facts, "ib") or "InfiniBand ports unknown"
        return [Result("ib.state", "error", error, None, expected)]
    ports = ib_ports(facts)
    results: list[Result] = []
    for p in ports:
        observed = {k: p.get(k) for k in ("device", "port", "state", "phys_state")}
        unknown = _unreadable(p, ("ports", "state", "phys_state"))
        if unknown is not None:
            where = port_name(p) if p.get("port") is not None else shown(p.get("device"))
            message = f"InfiniBand port {where}: {unknown}, so its link state is unknown"
            results.append(Result("ib.state", "error", message, observed, expected))
        elif (p.get("state"), p.get("phys_state")) != IB_STATE_OK:
            message = (
                f"InfiniBand port {port_name(p)} is {shown(p.get('state'))} "
                f"({shown(p.get('phys_state'))}), expected ACTIVE (LinkUp)"
            )
            results.append(Result("ib.state", "fail", message, observed, expected))
    if ports and not results:
        message = f"{len(ports)} InfiniBand ports ACTIVE and LinkUp"
        results = [Result("ib.state", "pass", message, len(ports), expected)]
    return results + _ib_reads(ports)


# Reads that matter on a working port. An unreadable rate on a port that is down says nothing
# more than ib.state's failure (mlx5 answers EINVAL for the rate of a port with no cable);
# unreadable counters are unknown, as ib.link_downed treats them.
_ACTIVE_PORT_READS = ("rate", "link_layer")


def _ib_reads(ports: list[dict[str, Any]]) -> list[Result]:
    """ERROR per ACTIVE port whose rate or link layer could not be read."""
    results = []
    for p in ports:
        unknown = _unreadable(p, _ACTIVE_PORT_READS)
        if unknown is not None and p.get("state") == "ACTIVE":
            message = f"InfiniBand port {port_name(p)} is ACTIVE but its {unknown}"
            observed = {"device": p.get("device"), "port": p.get("port"), **_port_errors(p)}
            results.append(Result("ib.read", "error", message, observed, "readable"))
    return results


def _ib_link_downed(facts: dict[str, Any], limit: int) -> list[Result]:
    """WARN per port whose link went down more often than allowed since boot."""
    counted = [
        p for p in ib_ports(facts) if (p.get("counters") or {}).get("link_downed") is not None
    ]
    if not counted:
        return []  # no IB, or a driver that hides the counters: nothing to judge
    flapping = [p for p in counted if p["counters"]["link_downed"] > limit]
    if not flapping:
        most = max(p["counters"]["link_downed"] for p in counted)
        message = f"{len(counted)} InfiniBand ports, at most {most} link-down events since boot"
        return [Result("ib.link_downed", "pass", f"{message} (allowed {limit})", most, limit)]
    return [
        Result(
            "ib.link_downed",
            "warn",
            f"InfiniBand port {port_name(p)} went down {p['counters']['link_downed']} times "
            f"since boot (link_downed counter, allowed {limit}): check the cable and switch port",
            {"device": p.get("device"), "port": p.get("port"), **p["counters"]},
            limit,
        )
        for p in flapping
    ]


def _nvme_count(facts: dict[str, Any], want: int) -> list[Result]:
    controllers = facts.get("nvme")
    if controllers is None:
        error = probe_error(facts, "nvme") or "NVMe controllers unknown"
        return [Result("nvme.count", "error", error, None, want)]
    local = [c for c in controllers if c.get("transport") in LOCAL_NVME_TRANSPORTS]
    message = f"{len(local)} NVMe controllers (expected {want})"
    if local:
        models = sorted({str(c.get("model")) for c in local})
        message += f": {listed(models, len(models))}"
    status: Status = "pass" if len(local) == want else "fail"
    return [Result("nvme.count", status, message, len(local), want)]


def _scratch_free(facts: dict[str, Any], want: float) -> list[Result]:
    scratch = facts.get("scratch")
    if scratch is None or scratch.get("free_gb") is None:
        error = probe_error(facts, "scratch") or "free space in scratch_dir unknown"
        return [Result("scratch.free", "error", error, None, want)]
    free = scratch["free_gb"]
    message = f"{shown(scratch.get('path'))}: {free:g} GiB free (expected at least {want:g} GiB)"
    status: Status = "pass" if free >= want else "fail"
    return [Result("scratch.free", status, message, free, want)]


def _mounts_writable(facts: dict[str, Any], paths: list[str]) -> list[Result]:
    """Per expected path that is mounted: FAIL when read-only. An unmounted path or an
    unknown mount table is mounts.present's finding, not repeated here."""
    # Later entries shadow earlier ones on the same mount point, as the kernel shows them.
    table = {normalize_mountpoint(m["mountpoint"]): m for m in facts.get("mounts") or []}
    results = []
    for path in paths:
        mount = table.get(normalize_mountpoint(path))
        if mount is None or mount.get("options") is None:
            continue
        result_id = f"mounts.writable:{path}"
        if "ro" in mount["options"]:
            message = (
                f"{path} mounted read-only ({shown(mount['fstype'])} from {shown(mount['device'])})"
            )
            results.append(Result(result_id, "fail", message, "ro", "rw"))
        else:
            results.append(Result(result_id, "pass", f"{path} mounted read-write", "rw", "rw"))
    return results


# Results come out in this order.
CHECKS: tuple[Check[FactCheck], ...] = (
    check("ib.state", _ib_state),
    check("ib.link_downed", _ib_link_downed, "max_ib_link_downed"),
    check("nvme.count", _nvme_count, "nvme_count"),
    check("scratch.free", _scratch_free, "min_scratch_free_gb"),
    check("mounts.writable", _mounts_writable, "mounts"),
)


def evaluate_io_health(
    facts: dict[str, Any], expect: Mapping[str, Any] | Expectations
) -> list[Result]:
    """ib.state (and ib.read), ib.link_downed, then nvme.count, scratch.free and
    mounts.writable:<path> when `expect` asks for them."""
    return run_checks(CHECKS, facts, expectations(expect))
