"""InfiniBand counters, NVMe, mount options and their evaluation, down to the fault fixtures.

Each fault overlay under tests/fixtures/faults/ produces exactly these findings (non-pass
results) from check.py, io_health.py and dcgm.py together, with EXPECT below:

    ib-port-down     ib.ports fail, ib.rate fail, ib.state fail  (mlx5_3/1 DOWN/Polling; a down
                     mlx5 port reads 10 Gb/sec (4X SDR), as ibstat shows it)
    ib-half-rate     ib.rate fail                                (mlx5_5/1 at 200 Gb/s, HDR)
    ib-link-flaps    ib.link_downed warn                         (mlx5_2/1 went down 7 times)
    nvme-missing     nvme.count fail                             (nvme7 gone, 7 of 8)
    mount-read-only  mounts.writable:/raid fail                  (/raid remounted ro)
    dcgm-fail        dcgm.software fail                          (GPU 3, corrupt InfoROM)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sysroots import H100_EXPECT, build_sysroot, fault_names

from dcctl.evaluate.check import evaluate_facts
from dcctl.evaluate.dcgm import evaluate_dcgm
from dcctl.evaluate.io_health import evaluate_io_health
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS
from dcctl.node.facts import collect_facts
from dcctl.node.probes import ib, storage, system
from dcctl.node.sysroot import SYSROOT_ENV

EXPECT: dict[str, Any] = {
    **HEALTH_DEFAULTS,
    **H100_EXPECT,
    "mounts": ["/data", "/raid"],
    "nvme_count": 8,
}
FAULT_FINDINGS: dict[str, list[tuple[str, str]]] = {
    "ib-port-down": [("ib.ports", "fail"), ("ib.rate", "fail"), ("ib.state", "fail")],
    "ib-half-rate": [("ib.rate", "fail")],
    "ib-link-flaps": [("ib.link_downed", "warn")],
    "nvme-missing": [("nvme.count", "fail")],
    "mount-read-only": [("mounts.writable:/raid", "fail")],
    "dcgm-fail": [("dcgm.software", "fail")],
}
ZERO_COUNTERS = dict.fromkeys(ib.COUNTER_FILES, 0)


def ib_port(device: str = "mlx5_0", **fields: Any) -> dict[str, Any]:
    port = {"device": device, "port": 1, "state": "ACTIVE", "phys_state": "LinkUp",
            "rate_gbps": 400, "link_layer": "InfiniBand"}  # fmt: skip
    return {**port, "counters": dict(ZERO_COUNTERS), **fields}


def ids(results: list[Result]) -> list[tuple[str, str]]:
    return [(r.id, r.status) for r in results]


def sysroot_facts(monkeypatch: pytest.MonkeyPatch, root: Path) -> dict[str, Any]:
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    return collect_facts({"scratch_dir": "/var/tmp/dcctl", "dcgm_level": 1})


def findings(facts: dict[str, Any]) -> list[tuple[str, str]]:
    results = evaluate_facts(facts, EXPECT) + evaluate_io_health(facts, EXPECT)
    results += evaluate_dcgm(facts)
    return sorted((r.id, r.status) for r in results if r.status != "pass")


# --- probes ---------------------------------------------------------------------------------


def test_parse_counter() -> None:
    assert ib.parse_counter("7\n") == 7
    assert ib.parse_counter(None) is None
    assert ib.parse_counter("N/A\n") is None


def test_parse_port_with_counters() -> None:
    files = {"state": "4: ACTIVE\n", "phys_state": "5: LinkUp\n", "rate": "400 Gb/sec (4X NDR)\n",
             "link_layer": "InfiniBand\n"}  # fmt: skip
    port = ib.parse_port("mlx5_2", "1", files, {"link_downed": "7\n", "symbol_error": "0\n"})
    assert port["counters"] == {
        "link_downed": 7,
        "link_error_recovery": None,
        "symbol_error": 0,
        "port_rcv_errors": None,
    }


def test_collect_ib_reads_counters(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(build_sysroot(tmp_path, "ib-link-flaps")))
    by_device = {p["device"]: p for p in ib.collect_ib()}
    assert by_device["mlx5_2"]["counters"]["link_downed"] == 7
    assert by_device["mlx5_0"]["counters"] == ZERO_COUNTERS
    # The RoCE NIC has no counters recorded: unknown, not zero.
    assert set(by_device["mlx5_8"]["counters"].values()) == {None}


def test_unreadable_counter_is_unknown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = build_sysroot(tmp_path)
    counter = root / "sys/class/infiniband/mlx5_0/ports/1/counters/symbol_error"
    counter.unlink()
    counter.mkdir()  # reading it raises IsADirectoryError, as EINVAL from a driver would
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    port = ib.collect_ib()[0]
    assert port["counters"]["symbol_error"] is None
    assert port["counters"]["link_downed"] == 0


def test_parse_controller_strips_sysfs_padding() -> None:
    files = {"model": "SAMSUNG MZWLR3T8HBLS-00007              \n",
             "serial": "S6CRNA0T502117      \n", "transport": None}  # fmt: skip
    assert storage.parse_controller("nvme0", files) == {
        "name": "nvme0",
        "model": "SAMSUNG MZWLR3T8HBLS-00007",
        "serial": "S6CRNA0T502117",
        "transport": None,
    }


def test_collect_nvme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(SYSROOT_ENV, str(build_sysroot(tmp_path)))
    controllers = storage.collect_nvme()
    assert [c["name"] for c in controllers] == [f"nvme{n}" for n in range(8)]
    assert {(c["model"], c["transport"]) for c in controllers} == {
        ("SAMSUNG MZWLR3T8HBLS-00007", "pcie")
    }
    monkeypatch.setenv(SYSROOT_ENV, str(tmp_path / "nothing"))
    assert storage.collect_nvme() == []


def test_parse_mounts_keeps_options() -> None:
    text = "/dev/md0 /raid ext4 ro,relatime,stripe=32 0 0\nshort /x\n"
    assert system.parse_mounts(text) == [
        {"device": "/dev/md0", "mountpoint": "/raid", "fstype": "ext4",
         "options": ["ro", "relatime", "stripe=32"]},
    ]  # fmt: skip


# --- ib.state and ib.link_downed -------------------------------------------------------------


def test_ib_state_passes_once_and_ignores_roce() -> None:
    ports = [ib_port(f"mlx5_{n}") for n in range(8)]
    ports.append(ib_port("mlx5_8", state="DOWN", phys_state="Disabled", link_layer="Ethernet"))
    results = evaluate_io_health({"ib": ports}, HEALTH_DEFAULTS)
    assert ids(results) == [("ib.state", "pass"), ("ib.link_downed", "pass")]
    assert results[0].message == "8 InfiniBand ports ACTIVE and LinkUp"


def test_ib_state_fails_per_port_naming_it() -> None:
    ports = [ib_port("mlx5_0"), ib_port("mlx5_3", state="DOWN", phys_state="Polling"),
             ib_port("mlx5_4", state="INIT", phys_state="LinkUp")]  # fmt: skip
    results = [r for r in evaluate_io_health({"ib": ports}, {}) if r.id == "ib.state"]
    assert [r.message for r in results] == [
        "InfiniBand port mlx5_3/1 is DOWN (Polling), expected ACTIVE (LinkUp)",
        "InfiniBand port mlx5_4/1 is INIT (LinkUp), expected ACTIVE (LinkUp)",
    ]
    assert results[0].observed == {
        "device": "mlx5_3",
        "port": 1,
        "state": "DOWN",
        "phys_state": "Polling",
    }


def test_nothing_without_infiniband() -> None:
    assert evaluate_io_health({"ib": []}, HEALTH_DEFAULTS) == []
    roce_only = {"ib": [ib_port(link_layer="Ethernet")]}
    assert evaluate_io_health(roce_only, HEALTH_DEFAULTS) == []


def test_ib_probe_failure_is_an_error() -> None:
    facts = {"ib": None, "probe_errors": {"ib": "PermissionError: denied"}}
    [result] = evaluate_io_health(facts, HEALTH_DEFAULTS)
    assert (result.id, result.status) == ("ib.state", "error")
    assert result.message == "ib probe failed: PermissionError: denied"


def test_link_downed_warns_per_port_over_the_limit() -> None:
    flapping = ib_port("mlx5_2", counters={**ZERO_COUNTERS, "link_downed": 7})
    facts = {"ib": [ib_port("mlx5_0"), flapping, ib_port("mlx5_5", counters=None)]}
    [warn] = [r for r in evaluate_io_health(facts, {"max_ib_link_downed": 3}) if r.status == "warn"]
    assert warn.id == "ib.link_downed"
    assert warn.message.startswith("InfiniBand port mlx5_2/1 went down 7 times since boot")
    assert warn.expected == 3
    # At the limit is still fine.
    assert ids(evaluate_io_health(facts, {"max_ib_link_downed": 7}))[-1] == (
        "ib.link_downed",
        "pass",
    )


def test_link_downed_bad_expectation_is_an_error() -> None:
    results = evaluate_io_health({"ib": [ib_port()]}, {"max_ib_link_downed": "none"})
    assert ids(results) == [("ib.state", "pass"), ("ib.link_downed", "error")]


# --- nvme.count, scratch.free, mounts.writable -----------------------------------------------


def nvme(name: str, transport: str | None = "pcie") -> dict[str, Any]:
    return {
        "name": name,
        "model": "SAMSUNG MZWLR3T8HBLS-00007",
        "serial": "S6",
        "transport": transport,
    }


def test_nvme_count_only_when_expected() -> None:
    facts = {"nvme": [nvme("nvme0")]}
    assert evaluate_io_health(facts, HEALTH_DEFAULTS) == []
    [result] = evaluate_io_health(facts, {"nvme_count": 1})
    assert (result.id, result.status, result.observed) == ("nvme.count", "pass", 1)
    assert result.message == "1 NVMe controllers (expected 1): SAMSUNG MZWLR3T8HBLS-00007"


def test_nvme_count_ignores_fabric_attached_controllers() -> None:
    facts = {"nvme": [nvme("nvme0"), nvme("nvme1", transport="tcp"), nvme("nvme2", None)]}
    [result] = evaluate_io_health(facts, {"nvme_count": 3})
    assert (result.status, result.observed) == ("fail", 2)


def test_nvme_count_unknown_or_misconfigured() -> None:
    facts = {"nvme": None, "probe_errors": {"nvme": "OSError: I/O error"}}
    assert ids(evaluate_io_health(facts, {"nvme_count": 8})) == [("nvme.count", "error")]
    assert ids(evaluate_io_health({"nvme": []}, {"nvme_count": "8"})) == [("nvme.count", "error")]


def test_scratch_free() -> None:
    facts = {"scratch": {"path": "/var/tmp/dcctl", "exists": True, "free_gb": 120.5}}
    [short] = evaluate_io_health(facts, {"min_scratch_free_gb": 500})
    assert (short.id, short.status) == ("scratch.free", "fail")
    assert short.message == "/var/tmp/dcctl: 120.5 GiB free (expected at least 500 GiB)"
    assert ids(evaluate_io_health(facts, {"min_scratch_free_gb": 100})) == [
        ("scratch.free", "pass")
    ]
    assert evaluate_io_health(facts, {"min_scratch_free_gb": None}) == []
    assert ids(evaluate_io_health({"scratch": None}, {"min_scratch_free_gb": 1})) == [
        ("scratch.free", "error")
    ]


def test_mounts_writable_per_expected_path() -> None:
    mounts = [
        {"device": "/dev/md1", "mountpoint": "/", "fstype": "ext4", "options": ["rw"]},
        {"device": "/dev/md0", "mountpoint": "/raid", "fstype": "ext4", "options": ["ro"]},
        {"device": "10.0.0.5:/export/data", "mountpoint": "/data", "fstype": "nfs4",
         "options": ["rw", "hard"]},
    ]  # fmt: skip
    results = evaluate_io_health({"mounts": mounts}, {"mounts": ["/data", "/raid/", "/scratch"]})
    # /scratch is not mounted: that is mounts.present's finding, not repeated here.
    assert ids(results) == [("mounts.writable:/data", "pass"), ("mounts.writable:/raid/", "fail")]
    assert results[1].message == "/raid/ mounted read-only (ext4 from /dev/md0)"
    assert evaluate_io_health({"mounts": None}, {"mounts": ["/data"]}) == []


# --- the recorded node and its faults, end to end on the node side ---------------------------


def test_healthy_node_has_no_findings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path))
    assert findings(facts) == []
    passed = {r.id for r in evaluate_io_health(facts, EXPECT)}
    assert passed == {"ib.state", "ib.link_downed", "nvme.count", "mounts.writable:/data",
                      "mounts.writable:/raid"}  # fmt: skip


@pytest.mark.parametrize("fault", sorted(FAULT_FINDINGS))
def test_fault_produces_exactly_its_findings(
    fault: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path, fault))
    assert findings(facts) == FAULT_FINDINGS[fault]


def test_fault_findings_name_what_broke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def messages(fault: str, result_id: str) -> list[str]:
        facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path, fault))
        results = evaluate_facts(facts, EXPECT) + evaluate_io_health(facts, EXPECT)
        return [r.message for r in results if r.id == result_id and r.status != "pass"]

    assert messages("ib-port-down", "ib.state") == [
        "InfiniBand port mlx5_3/1 is DOWN (Polling), expected ACTIVE (LinkUp)"
    ]
    assert messages("ib-half-rate", "ib.rate") == [
        "mlx5_5/1 at 200 Gb/s (expected 400 Gb/s on every port)"
    ]
    [flaps] = messages("ib-link-flaps", "ib.link_downed")
    assert flaps.startswith("InfiniBand port mlx5_2/1 went down 7 times since boot")
    assert messages("nvme-missing", "nvme.count") == [
        "7 NVMe controllers (expected 8): SAMSUNG MZWLR3T8HBLS-00007"
    ]
    assert messages("mount-read-only", "mounts.writable:/raid") == [
        "/raid mounted read-only (ext4 from /dev/md0)"
    ]


@pytest.mark.parametrize("fault", sorted(set(fault_names()) - set(FAULT_FINDINGS)))
def test_other_faults_leave_io_and_dcgm_clean(
    fault: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # GPU and kernel-log faults must not surface as IB, storage or DCGM findings.
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path, fault))
    results = evaluate_io_health(facts, EXPECT) + evaluate_dcgm(facts)
    assert [(r.id, r.status) for r in results if r.status != "pass"] == []
