"""NVMe controllers from /sys/class/nvme/nvme<N>/ (model, serial, transport)."""

from __future__ import annotations

from dcctl.node.probes.ib import list_sorted
from dcctl.node.sysroot import read_text

NVME_CLASS_DIR = "/sys/class/nvme"
CONTROLLER_FILES = ("model", "serial", "transport")


def parse_controller(name: str, files: dict[str, str | None]) -> dict[str, str | None]:
    """The controller's sysfs files (None where missing) -> {name, model, serial, transport}.

    sysfs pads model and serial with spaces to their NVMe Identify field widths.
    """
    fact: dict[str, str | None] = {"name": name}
    for field in CONTROLLER_FILES:
        text = (files.get(field) or "").strip()
        fact[field] = text or None
    return fact


def collect_nvme() -> list[dict[str, str | None]]:
    """Every NVMe controller, local (transport pcie) and fabric-attached (tcp, rdma, fc)."""
    controllers = []
    for name in list_sorted(NVME_CLASS_DIR):
        files = {field: read_text(f"{NVME_CLASS_DIR}/{name}/{field}") for field in CONTROLLER_FILES}
        controllers.append(parse_controller(name, files))
    return controllers
