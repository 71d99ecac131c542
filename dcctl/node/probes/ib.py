"""InfiniBand (and RoCE) ports from /sys/class/infiniband/<dev>/ports/<n>/."""

from __future__ import annotations

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
) -> dict[str, Any]:
    """The port's sysfs files and counter files (None where missing) -> one ib fact."""
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
    }


def natural_key(name: str) -> list[Any]:
    """Sort key putting mlx5_2 before mlx5_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_sorted(path: str) -> list[str]:
    """A sysfs directory's entries in natural order; [] when it does not exist."""
    try:
        return sorted(os.listdir(sysroot_path(path)), key=natural_key)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read_counter(path: str) -> str | None:
    try:
        return read_text(path)
    except OSError:
        # Some drivers refuse to read PMA counters (EINVAL on RoCE ports, EIO on a port
        # that is resetting): the counter is unknown, the port is still reported.
        return None


def collect_ib() -> list[dict[str, Any]]:
    """Every port of every RDMA device; [] on a host without any."""
    ports = []
    for device in list_sorted(IB_CLASS_DIR):
        ports_dir = f"{IB_CLASS_DIR}/{device}/ports"
        for port in list_sorted(ports_dir):
            files = {name: read_text(f"{ports_dir}/{port}/{name}") for name in PORT_FILES}
            counters = {
                name: _read_counter(f"{ports_dir}/{port}/counters/{name}") for name in COUNTER_FILES
            }
            ports.append(parse_port(device, port, files, counters))
    return ports
