"""InfiniBand (and RoCE) ports from /sys/class/infiniband/<dev>/ports/<n>/.

A file that cannot be read costs only its own value: the kernel refuses some reads (mlx5
answers `rate` with EINVAL on a port with no cable, PMA counters with EINVAL on RoCE ports,
EIO while a port resets), and every other port, attribute and device is still reported. The
refusal is kept in the port's `errors` ({attribute: "EINVAL: Invalid argument"}, present
only when a read failed) so the evaluator can tell "unreadable" from "missing".
"""

from __future__ import annotations

import errno
import os
import re
from typing import Any

from dcctl.node.sysroot import read_text, sysroot_path

IB_CLASS_DIR = "/sys/class/infiniband"
PORT_FILES = ("state", "phys_state", "rate", "link_layer")
# Error counters under ports/<n>/counters/; link_downed counts the times the link went down
# since boot (a flapping cable), the others count bit errors on the wire.
COUNTER_FILES = ("link_downed", "link_error_recovery", "symbol_error", "port_rcv_errors")


def _strip_code(value: str) -> str:
    # state and phys_state read "4: ACTIVE", "5: LinkUp": keep the name, drop the code.
    return value.split(":", 1)[1].strip() if ":" in value else value.strip()


def parse_rate_gbps(text: str) -> float | int | None:
    """ "400 Gb/sec (4X NDR)" -> 400; fractional rates (2.5 Gb/sec, 1X SDR) stay floats."""
    match = re.match(r"\s*(\d+(?:\.\d+)?)\s*Gb/sec", text)
    if match is None:
        return None
    value = float(match.group(1))
    return int(value) if value.is_integer() else value


def parse_counter(text: str | None) -> int | None:
    """A counter file's text -> its value; None when missing or not a number."""
    if text is None:
        return None
    value = text.strip()
    return int(value) if value.isdigit() else None


def parse_port(
    device: str,
    port: str,
    files: dict[str, str | None],
    counters: dict[str, str | None] | None = None,
    errors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The port's sysfs files and counter files (None where missing or unreadable) -> one ib
    fact; `errors` names the reads that failed ("rate", "counters/symbol_error")."""
    counter_texts = counters or {}

    def field(name: str) -> str | None:
        text = files.get(name)
        return None if text is None else text.strip()

    state, phys_state, rate = field("state"), field("phys_state"), field("rate")
    return {
        "device": device,
        "port": int(port) if port.isdigit() else port,
        "state": _strip_code(state) if state is not None else None,
        "phys_state": _strip_code(phys_state) if phys_state is not None else None,
        "rate_gbps": parse_rate_gbps(rate) if rate is not None else None,
        "link_layer": field("link_layer"),
        "counters": {name: parse_counter(counter_texts.get(name)) for name in COUNTER_FILES},
        **({"errors": dict(errors)} if errors else {}),
    }


def natural_key(name: str) -> list[Any]:
    """Sort key putting mlx5_2 before mlx5_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def describe_os_error(exc: OSError) -> str:
    """ "EINVAL: Invalid argument": the errno's name, which says more than its number."""
    if not exc.errno:
        return f"{type(exc).__name__}: {exc}"
    name = errno.errorcode.get(exc.errno, f"errno {exc.errno}")
    return f"{name}: {exc.strerror or exc}"


def list_sorted(path: str) -> list[str]:
    """A sysfs directory's entries in natural order; [] when it does not exist."""
    try:
        return sorted(os.listdir(sysroot_path(path)), key=natural_key)
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_attribute(path: str, errors: dict[str, str], name: str) -> str | None:
    """The file's text; None when it is missing, or when reading it fails (then errors[name]
    says why)."""
    try:
        return read_text(path)
    except OSError as exc:
        errors[name] = describe_os_error(exc)
        return None


def collect_port(device: str, port: str) -> dict[str, Any]:
    """One port's fact; a file it cannot read is recorded in its errors, never raised."""
    port_dir = f"{IB_CLASS_DIR}/{device}/ports/{port}"
    errors: dict[str, str] = {}
    files = {name: read_attribute(f"{port_dir}/{name}", errors, name) for name in PORT_FILES}
    counters = {
        name: read_attribute(f"{port_dir}/counters/{name}", errors, f"counters/{name}")
        for name in COUNTER_FILES
    }
    return parse_port(device, port, files, counters, errors)


def collect_ib() -> list[dict[str, Any]]:
    """Every port of every RDMA device; [] on a host without any.

    A device whose ports cannot be listed is one entry with port None and errors["ports"].
    """
    ports: list[dict[str, Any]] = []
    for device in list_sorted(IB_CLASS_DIR):
        try:
            names = list_sorted(f"{IB_CLASS_DIR}/{device}/ports")
        except OSError as exc:
            error = {"ports": describe_os_error(exc)}
            ports.append({"device": device, "port": None, "errors": error})
            continue
        ports.extend(collect_port(device, port) for port in names)
    return ports
