"""InfiniBand: sysfs values captured on real HCAs (tests/fixtures/real/sysfs-ib/, source
beside each tree), and ports whose files the kernel refuses to read.

The kernel answers a read of `rate` on an mlx5 port with no cable with EINVAL. The honest
way to get that errno here without an HCA is a file that really raises it: the tree's `rate`
is a symlink to /sys/class/net/lo/speed, which the kernel's ethtool path refuses with EINVAL
for the same reason (a link with no speed). Where that host file does not behave so, the
test is skipped rather than faked; a directory in place of the file (EISDIR) covers the same
code path on every host, with a different errno that the facts then name.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, build_sysroot

from dcctl.evaluate.io_health import evaluate_io_health
from dcctl.node.probes import ib
from dcctl.node.sysroot import SYSROOT_ENV

REAL = FIXTURES / "real" / "sysfs-ib"
PROCFS_TREE = REAL / "prometheus-procfs"
LOOPBACK_SPEED = Path("/sys/class/net/lo/speed")
PORTS = "sys/class/infiniband/{}/ports/1"


def einval_on_this_host() -> bool:
    try:
        LOOPBACK_SPEED.read_text()
    except OSError as exc:
        return exc.errno == errno.EINVAL
    return False


# What these trees test: the reads of each port. ib.link_downed is judged too (its limit has
# a default), but it is not the point here.
PORT_READS = ("ib.state", "ib.read")


def port_reads(facts: dict[str, Any]) -> list[Any]:
    return [r for r in evaluate_io_health(facts, {}) if r.id in PORT_READS]


def judged(facts: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [
        (r.id, r.status, (r.observed or {}).get("device") if isinstance(r.observed, dict) else None)
        for r in port_reads(facts)
    ]


def port_down(root: Path, device: str) -> Path:
    port = root / PORTS.format(device)
    (port / "state").write_text("1: DOWN\n")
    (port / "phys_state").write_text("3: Disabled\n")
    return port


def unreadable(path: Path, how: str) -> None:
    path.unlink()
    if how == "einval":
        path.symlink_to(LOOPBACK_SPEED)
    else:
        path.mkdir()


HOW = [
    pytest.param(
        "einval",
        "EINVAL: Invalid argument",
        marks=pytest.mark.skipif(
            not einval_on_this_host(), reason=f"{LOOPBACK_SPEED} does not raise EINVAL here"
        ),
    ),
    pytest.param("eisdir", "EISDIR: Is a directory"),
]


# --- real sysfs values ----------------------------------------------------------------------


def test_real_sysfs_tree_names_its_source() -> None:
    source = REAL / "prometheus-procfs.source.txt"
    assert "https://github.com/prometheus/procfs/" in source.read_text()


def test_real_hca_values_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(PROCFS_TREE))
    ports = ib.collect_ib()
    assert [(p["device"], p["port"], p["state"], p["phys_state"], p["rate_gbps"],
             p["link_layer"]) for p in ports] == [
        ("hfi1_0", 1, "ACTIVE", "LinkUp", 100, "InfiniBand"),
        ("mlx4_0", 1, "ACTIVE", "LinkUp", 40, "InfiniBand"),
        ("mlx4_0", 2, "ACTIVE", "LinkUp", 40, "InfiniBand"),
    ]  # fmt: skip
    # No counters were recorded: unknown, and missing files are not read errors.
    assert all("errors" not in p for p in ports)
    assert judged({"ib": ports}) == [("ib.state", "pass", None)]


@pytest.mark.parametrize(
    ("text", "gbps"),
    [
        # The kernel's rate_show format, as real HCAs print it (drivers/infiniband/core/sysfs.c).
        ("100 Gb/sec (4X EDR)\n", 100),
        ("40 Gb/sec (4X QDR)\n", 40),
        ("25 Gb/sec (1X EDR)\n", 25),
    ],
)
def test_real_rate_strings(text: str, gbps: int) -> None:
    assert ib.parse_rate_gbps(text) == gbps


# --- unreadable files -----------------------------------------------------------------------


@pytest.mark.parametrize(("how", "why"), HOW)
def test_unreadable_rate_on_a_down_port_hides_no_other_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str, why: str
) -> None:
    root = build_sysroot(tmp_path)
    unreadable(port_down(root, "mlx5_3") / "rate", how)
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    ports = ib.collect_ib()
    by_device = {p["device"]: p for p in ports}
    assert len(ports) == 9  # eight IB ports and the RoCE NIC, as on the healthy node
    assert by_device["mlx5_3"]["errors"] == {"rate": why}
    assert by_device["mlx5_3"]["rate_gbps"] is None
    assert by_device["mlx5_3"]["counters"]["link_downed"] == 0
    assert all(by_device[f"mlx5_{n}"]["rate_gbps"] == 400 for n in range(8) if n != 3)
    # The port is down; its rate being unreadable adds no finding of its own.
    assert judged({"ib": ports}) == [("ib.state", "fail", "mlx5_3")]


@pytest.mark.parametrize(("how", "why"), HOW)
def test_unreadable_rate_on_an_active_port_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, how: str, why: str
) -> None:
    root = build_sysroot(tmp_path)
    unreadable(root / PORTS.format("mlx5_5") / "rate", how)
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    ports = ib.collect_ib()
    results = port_reads({"ib": ports})
    assert [(r.id, r.status) for r in results] == [("ib.state", "pass"), ("ib.read", "error")]
    assert results[1].message == (
        f"InfiniBand port mlx5_5/1 is ACTIVE but its rate unreadable ({why})"
    )
    assert results[1].observed == {"device": "mlx5_5", "port": 1, "rate": why}


def test_unreadable_state_is_an_error_for_that_port_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = build_sysroot(tmp_path)
    unreadable(root / PORTS.format("mlx5_1") / "state", "eisdir")
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    ports = ib.collect_ib()
    assert [p["state"] for p in ports].count("ACTIVE") == 8  # 7 IB ports and the RoCE NIC
    results = port_reads({"ib": ports})
    assert [(r.id, r.status) for r in results] == [("ib.state", "error")]
    assert "mlx5_1/1: state unreadable (EISDIR: Is a directory)" in results[0].message


def test_unreadable_counter_is_recorded_but_not_judged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = build_sysroot(tmp_path)
    unreadable(root / PORTS.format("mlx5_0") / "counters" / "symbol_error", "eisdir")
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    ports = ib.collect_ib()
    assert ports[0]["errors"] == {"counters/symbol_error": "EISDIR: Is a directory"}
    assert ports[0]["counters"]["symbol_error"] is None
    assert judged({"ib": ports}) == [("ib.state", "pass", None)]


def test_a_device_whose_ports_cannot_be_listed_keeps_the_others(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    root = build_sysroot(tmp_path)
    ports_dir = root / "sys/class/infiniband/mlx5_2/ports"
    target = ports_dir.resolve()
    if ports_dir.is_symlink():
        ports_dir.unlink()
    else:
        os.rename(target, tmp_path / "moved-ports")
    ports_dir.symlink_to(ports_dir.name)  # a link to itself: listing it raises ELOOP
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    ports = ib.collect_ib()
    broken = [p for p in ports if p["device"] == "mlx5_2"]
    assert broken == [
        {"device": "mlx5_2", "port": None, "errors": {"ports": broken[0]["errors"]["ports"]}}
    ]
    assert broken[0]["errors"]["ports"].startswith("ELOOP: ")
    assert len(ports) == 9
    results = port_reads({"ib": ports})
    assert [(r.id, r.status) for r in results] == [("ib.state", "error")]
    assert results[0].message.startswith("InfiniBand port mlx5_2: ports unreadable (ELOOP")
