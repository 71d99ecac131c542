"""Node health: recorded H100 nodes end to end (probes -> facts -> results), one fault each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, build_sysroot

from dcctl.evaluate.gpus import bus_index, gpu_at
from dcctl.evaluate.node_health import evaluate_node_health
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS
from dcctl.node import sysroot
from dcctl.node.facts import TaskParamsError, facts_task
from dcctl.node.probes import modules

HEALTHY_IDS = [
    "kernel.xid",
    "kernel.sxid",
    "modules.nouveau",
    "modules.peermem",
    "fabric.manager",
]

# fault overlay -> (result id, status) of the one finding it was built for.
FAULTS = {
    "xid-79": ("kernel.xid", "fail"),
    "sxid-fatal": ("kernel.sxid", "fail"),
    "mlx5-pcie-limited": ("kernel.mlx5_pcie", "warn"),
    "nouveau-loaded": ("modules.nouveau", "fail"),
    "peermem-missing": ("modules.peermem", "fail"),
    "fabric-manager-down": ("fabric.manager", "fail"),
}


def node_facts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str | None = None, **params: Any
) -> dict[str, Any]:
    root = build_sysroot(tmp_path, fault)
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(root))
    return facts_task(params)


def judge(facts: dict[str, Any], **expect: Any) -> list[Result]:
    return evaluate_node_health(facts, {**HEALTH_DEFAULTS, **expect})


def findings(results: list[Result]) -> list[Result]:
    return [r for r in results if r.status != "pass"]


def test_healthy_h100_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = node_facts(monkeypatch, tmp_path)
    assert "probe_errors" not in facts
    assert facts["modules"][:3] == ["nvidia_peermem", "nvidia_uvm", "nvidia_drm"]
    assert facts["nvswitch_count"] == 4
    assert facts["fabric_manager"] == "active"
    log = facts["kernel_log"]
    assert (log["source"], log["window_h"]) == ("recorded", 24)
    assert log["xids"] == log["sxids"] == log["pcie_bandwidth_limited"] == []
    results = judge(facts)
    assert [r.id for r in results] == HEALTHY_IDS
    assert findings(results) == []
    messages = {r.id: r.message for r in results}
    assert messages["kernel.xid"] == "no hardware XIDs in the last 24 h"
    assert messages["fabric.manager"] == "fabric manager active (4 NVSwitches)"
    assert messages["modules.peermem"] == "nvidia_peermem loaded (8 InfiniBand ports)"


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_gives_exactly_its_finding(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fault: str
) -> None:
    results = judge(node_facts(monkeypatch, tmp_path, fault))
    assert [(r.id, r.status) for r in findings(results)] == [FAULTS[fault]]


def test_xid_79_names_the_gpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = node_facts(monkeypatch, tmp_path, "xid-79")
    (finding,) = findings(judge(facts))
    gpu = next(g for g in facts["gpus"] if g["pci_bus_id"] == "00000000:5D:00.0")
    assert finding.gpu == {
        "index": gpu["index"],
        "pci_bus_id": gpu["pci_bus_id"],
        "serial": gpu.get("serial"),
    }
    serial = f", SN {gpu['serial']}" if gpu.get("serial") else ""
    assert finding.message == (
        f"GPU {gpu['index']} (00000000:5D:00.0{serial}): XID 79 in the last 24 h: "
        "GPU has fallen off the bus; NVIDIA's Xid catalog: RESTART_BM"
    )
    assert finding.observed["count"] == 1
    assert "name=python3" in finding.observed["last"]


def test_sxid_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (finding,) = findings(judge(node_facts(monkeypatch, tmp_path, "sxid-fatal")))
    assert finding.message == (
        "nvidia-nvswitch2 (0000:07:00.0): SXid 24007 (fatal) in the last 24 h: "
        "Link 34 sourcetrack TCEN0 crumbstore ECC DBE Error (First)"
    )


def test_xid_window_comes_from_task_params(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The XID is 5 h 32 min older than the recording's newest line.
    facts = node_facts(monkeypatch, tmp_path, "xid-79", xid_window_h=5)
    assert facts["kernel_log"]["window_h"] == 5
    assert findings(judge(facts)) == []
    assert judge(facts)[0].message == "no hardware XIDs in the last 5 h"
    facts = facts_task({"xid_window_h": 5.6})
    assert [r.id for r in findings(judge(facts))] == ["kernel.xid"]


@pytest.mark.parametrize("bad", [0, -1, "24", True, None, float("nan"), float("inf")])
def test_xid_window_param_is_validated(bad: Any) -> None:
    with pytest.raises(TaskParamsError, match="xid_window_h must be a positive number"):
        facts_task({"xid_window_h": bad})


def test_ignore_xids_from_expect(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = node_facts(monkeypatch, tmp_path, "xid-79")
    assert findings(judge(facts, ignore_xids=[79])) == []
    (error,) = findings(judge(facts, ignore_xids="79"))
    assert (error.id, error.status) == ("kernel.xid", "error")
    assert "ignore_xids" in error.message


def test_cpu_only_node_gets_no_gpu_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(FIXTURES / "sysroots" / "no-gpu"))
    facts = facts_task({})
    assert facts["kernel_log"]["source"] == "none"  # nothing recorded for that node
    assert judge(facts, nvidia_peermem="required", fabric_manager="required") == []


def cpu_facts(**extra: Any) -> dict[str, Any]:
    log = {"source": "dmesg", "window_h": 24, "xids": [], "sxids": [], "pcie_bandwidth_limited": []}
    facts = {"gpu_source": "none", "gpus": [], "ib": [], "kernel_log": log}
    return {**facts, "modules": ["mlx5_core"], "nvswitch_count": 0, "fabric_manager": None, **extra}


def test_cpu_node_still_gets_nic_and_nouveau_findings() -> None:
    limited = {
        "device": "0000:1a:00.0",
        "text": "mlx5_core 0000:1a:00.0: 63.008 Gb/s available PCIe bandwidth, limited by 8.0 GT/s"
        " PCIe x8 link at 0000:00:01.0 (capable of 252.048 Gb/s with 16.0 GT/s PCIe x16 link)",
        "time": "2026-11-28T07:00:00+00:00",
    }
    facts = cpu_facts()
    facts["kernel_log"]["pcie_bandwidth_limited"] = [limited]
    (warning,) = judge(facts)
    assert (warning.id, warning.status) == ("kernel.mlx5_pcie", "warn")
    assert warning.message == (
        "mlx5 NIC 0000:1a:00.0: 63.008 Gb/s available PCIe bandwidth, limited by 8.0 GT/s PCIe x8"
        " link at 0000:00:01.0 (capable of 252.048 Gb/s with 16.0 GT/s PCIe x16 link)"
    )
    # nouveau only loads for an NVIDIA device: that node has a GPU the driver cannot use.
    (failure,) = judge(cpu_facts(modules=["nouveau", "drm"]))
    assert (failure.id, failure.status) == ("modules.nouveau", "fail")


def gpu_node(**extra: Any) -> dict[str, Any]:
    gpus = [{"index": 0, "pci_bus_id": "00000000:18:00.0", "serial": "1654223027418"}]
    ib = [{"device": "mlx5_0", "port": 1, "link_layer": "InfiniBand", "state": "ACTIVE"}]
    return cpu_facts(**{"gpu_source": "nvml", "gpus": gpus, "ib": ib, **extra})


def test_unreadable_kernel_log_on_a_gpu_node_warns_with_the_fix() -> None:
    log = {"source": "none", "window_h": 24, "error": "dmesg: read kernel buffer failed: EPERM"}
    results = judge(gpu_node(kernel_log=log))
    assert [(r.id, r.status, r.message) for r in results if r.id.startswith("kernel.")] == [
        (
            "kernel.xid",
            "warn",
            "kernel log unreadable (dmesg: read kernel buffer failed: EPERM): XIDs not checked; "
            "run dcctl as root, or set kernel.dmesg_restrict=0 or add the user to the "
            "systemd-journal group",
        )
    ]
    # A node without NVIDIA hardware has no XIDs to miss.
    assert not [r for r in judge(cpu_facts(kernel_log=log)) if r.id.startswith("kernel.")]


XID_LINE = "NVRM: Xid (PCI:0000:18:00): {xid}, pid=1234, name=python, Row remapper event"


def xid_node(xid: int, row_remap: dict[str, Any] | None, pci: str = "0000:18:00") -> dict[str, Any]:
    node = gpu_node()
    node["gpus"][0]["row_remap"] = row_remap
    event = {
        "xid": xid,
        "pci": pci,
        "text": XID_LINE.format(xid=xid),
        "time": "2026-11-28T07:00:00+00:00",
    }
    node["kernel_log"]["xids"] = [event]
    return node


SETTLED = {"correctable": 1, "uncorrectable": 0, "pending": False, "failed": False}


@pytest.mark.parametrize("xid", [63, 94])
@pytest.mark.parametrize("row_remap", [SETTLED, {**SETTLED, "pending": True}, None])
def test_row_remap_xids_are_counted_as_the_catalog_says(
    xid: int, row_remap: dict[str, Any] | None
) -> None:
    # NVIDIA's Xid catalog: 63 IGNORE, 94 RESTART_APP. A remap still to be done is judged by
    # gpu.row_remap from the GPU's own state, not from the XID that announced it.
    (result,) = [r for r in judge(xid_node(xid, row_remap)) if r.id == "kernel.xid"]
    assert result.status == "pass"
    assert result.message.endswith(f"(application XIDs not judged: {xid})")


def test_a_hardware_xid_names_the_catalog_action() -> None:
    (result,) = [r for r in judge(xid_node(48, SETTLED)) if r.id == "kernel.xid"]
    assert result.status == "fail"
    assert result.message.endswith(
        "double bit ECC error (uncorrectable memory error); NVIDIA's Xid catalog: WORKFLOW_XID_48"
    )


def test_xid_in_another_pci_domain_is_not_this_gpu() -> None:
    (result,) = [r for r in judge(xid_node(79, None, pci="0001:18:00")) if r.id == "kernel.xid"]
    assert result.gpu is None
    assert result.message.startswith("PCI 0001:18:00: XID 79 ")
    (same,) = [r for r in judge(xid_node(79, None, pci="00000000:18:00")) if r.id == "kernel.xid"]
    assert same.gpu is not None and same.gpu["index"] == 0


@pytest.mark.parametrize(
    ("spelling", "found"),
    [
        ("0000:18:00.0", True),
        ("00000000:18:00.0", True),
        ("18:00.0", True),  # domain 0 left out
        ("0000:18:00.0 ", True),
        ("0001:18:00.0", False),
        ("00010000:18:00.0", False),
        ("0000:18:00.1", False),
        ("0000:19:00.0", False),
    ],
)
def test_gpu_at_compares_the_whole_address(spelling: str, found: bool) -> None:
    facts = {"gpus": [{"index": 0, "pci_bus_id": "00000000:18:00.0"}]}
    assert (gpu_at(bus_index(facts), spelling) is not None) is found


def test_window_wording_says_since_boot_when_the_boot_is_recent() -> None:
    xid = [r for r in judge(gpu_node(uptime_s=3 * 3600)) if r.id == "kernel.xid"]
    assert [r.message for r in xid] == ["no hardware XIDs since boot, at most 24 h"]
    xid = [r for r in judge(gpu_node(uptime_s=25 * 3600)) if r.id == "kernel.xid"]
    assert [r.message for r in xid] == ["no hardware XIDs in the last 24 h"]
    # Uptime unknown: the log still covers this boot only.
    xid = [r for r in judge(gpu_node()) if r.id == "kernel.xid"]
    assert [r.message for r in xid] == ["no hardware XIDs since boot, at most 24 h"]


def test_failed_probe_is_an_error() -> None:
    facts = gpu_node(kernel_log=None, modules=None, fabric_manager=None, nvswitch_count=2)
    facts["probe_errors"] = {
        "kernel_log": "OSError: boom",
        "modules": "PermissionError: /proc/modules",
        "fabric_manager": "OSError: no",
    }
    assert [(r.id, r.status, r.message) for r in judge(facts)] == [
        ("kernel.xid", "error", "kernel_log probe failed: OSError: boom"),
        ("modules.nouveau", "error", "modules probe failed: PermissionError: /proc/modules"),
        ("modules.peermem", "error", "modules probe failed: PermissionError: /proc/modules"),
        ("fabric.manager", "error", "fabric_manager probe failed: OSError: no"),
    ]


def test_peermem_modes() -> None:
    without_ib = gpu_node(ib=[{"device": "mlx5_0", "port": 1, "link_layer": "Ethernet"}])
    assert [r.id for r in judge(without_ib)] == ["kernel.xid", "modules.nouveau"]
    (required,) = [
        r for r in judge(without_ib, nvidia_peermem="required") if r.id == "modules.peermem"
    ]
    assert required.status == "fail"
    assert required.message.startswith("nvidia_peermem not loaded (required by the inventory)")
    # Recent stacks do GPUDirect RDMA through dma-buf without the module: say how to opt out.
    assert "dma-buf" in required.message
    assert "set `nvidia_peermem: off` under expect" in required.message
    assert "modules.peermem" not in [r.id for r in judge(gpu_node(), nvidia_peermem=False)]
    (bad,) = [r for r in judge(gpu_node(), nvidia_peermem="yes") if r.id == "modules.peermem"]
    assert bad.status == "error"


def test_fabric_manager_modes() -> None:
    def fabric(facts: dict[str, Any], **expect: Any) -> list[tuple[str, str]]:
        return [(r.status, r.message) for r in judge(facts, **expect) if r.id == "fabric.manager"]

    assert fabric(gpu_node()) == []  # no NVSwitch: not judged
    assert fabric(gpu_node(), fabric_manager="required") == [
        ("fail", "fabric manager state unknown: no systemctl to ask (required by the inventory)")
    ]
    assert fabric(gpu_node(nvswitch_count=4, fabric_manager="inactive"), fabric_manager="off") == []
    assert fabric(gpu_node(nvswitch_count=4, fabric_manager="inactive")) == [
        ("fail", "fabric manager inactive (4 NVSwitches): GPUs cannot use NVLink until it runs")
    ]


# --- the modules probes on their own --------------------------------------------------------


def test_parse_modules() -> None:
    text = (
        "nvidia_uvm 1548288 4 - Live 0x0000000000000000 (POE)\n\nnvidia 56692736 170 - Live 0x0\n"
    )
    assert modules.parse_modules(text) == ["nvidia_uvm", "nvidia"]


def test_nvswitch_count_needs_vendor_and_class(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    devices = tmp_path / "sys" / "bus" / "pci" / "devices"
    for address, vendor, pci_class in [
        ("0000:05:00.0", "0x10de", "0x068000"),  # NVSwitch
        ("0000:18:00.0", "0x10de", "0x030200"),  # H100: NVIDIA, but a 3D controller
        ("0000:00:00.0", "0x8086", "0x068000"),  # someone else's "other bridge"
    ]:
        (devices / address).mkdir(parents=True)
        (devices / address / "vendor").write_text(f"{vendor}\n")
        (devices / address / "class").write_text(f"{pci_class}\n")
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(tmp_path))
    assert modules.collect_nvswitch_count() == 1
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(tmp_path / "nothing"))
    assert modules.collect_nvswitch_count() is None
    assert modules.collect_modules() is None
    assert modules.collect_fabric_manager() is None  # nothing recorded


def test_fabric_manager_from_systemctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    systemctl = bin_dir / "systemctl"
    systemctl.write_text(
        '#!/bin/sh\n[ "$*" = "is-active nvidia-fabricmanager" ] && echo failed\nexit 3\n'
    )
    systemctl.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert modules.collect_fabric_manager() == "failed"
    # systemd not running (a container): nothing on stdout.
    systemctl.write_text("#!/bin/sh\necho 'System has not been booted with systemd' >&2\nexit 1\n")
    assert modules.collect_fabric_manager() == "unknown"
    systemctl.unlink()
    assert modules.collect_fabric_manager() is None
