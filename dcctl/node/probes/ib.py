"""InfiniBand (and RoCE) ports from /sys/class/infiniband/<dev>/ports/<n>/."""

from __future__ import annotations

import os
import re
from typing import Any

from dcctl.node.sysroot import read_text, sysroot_path

IB_CLASS_DIR = "/sys/class/infiniband"
PORT_FILES = ("state", "phys_state", "rate", "link_layer")


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


def parse_port(device: str, port: str, files: dict[str, str | None]) -> dict[str, Any]:
    """The port's sysfs files (None where missing) -> one ib fact."""

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
    }


def natural_key(name: str) -> list[Any]:
    """Sort key putting mlx5_2 before mlx5_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(sysroot_path(path)), key=natural_key)
    except (FileNotFoundError, NotADirectoryError):
        return []


def collect_ib() -> list[dict[str, Any]]:
    """Every port of every RDMA device; [] on a host without any."""
    ports = []
    for device in _listdir(IB_CLASS_DIR):
        ports_dir = f"{IB_CLASS_DIR}/{device}/ports"
        for port in _listdir(ports_dir):
            files = {name: read_text(f"{ports_dir}/{port}/{name}") for name in PORT_FILES}
            ports.append(parse_port(device, port, files))
    return ports
