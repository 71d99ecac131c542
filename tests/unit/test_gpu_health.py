"""GPU health: the healthy H100 node passes, each GPU fault gives exactly its one finding."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from sysroots import H100_EXPECT, build_sysroot

from dcctl.evaluate.check import evaluate_facts
from dcctl.evaluate.gpu_health import CHECK_IDS, NVML_SKIP_MESSAGE, evaluate_gpu_health
from dcctl.evaluate.gpus import gpu_label
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS
from dcctl.node import sysroot
from dcctl.node.facts import collect_facts

# Not judged on the H100 node: Hopper has no page retirement (it remaps rows instead).
NOT_APPLICABLE = {"gpu.retired_pages"}


def node_facts(monkeypatch: pytest.MonkeyPatch, root: Path) -> dict[str, Any]:
    """What the node runtime reports for a recorded tree."""
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(root))
    return collect_facts({"scratch_dir": "/var/tmp/dcctl"})


@pytest.fixture
def h100(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    return node_facts(monkeypatch, build_sysroot(tmp_path))


def judge(facts: dict[str, Any], **expect: Any) -> list[Result]:
    """GPU health as `dcctl check` runs it: HEALTH_DEFAULTS under the inventory's expect."""
    return evaluate_gpu_health(facts, {**HEALTH_DEFAULTS, **expect})


def findings(results: list[Result]) -> list[tuple[str, str, int | None]]:
    return [
        (r.id, r.status, r.gpu["index"] if r.gpu else None) for r in results if r.status != "pass"
    ]


def with_gpu(facts: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    """A copy of the facts with one GPU's readings changed."""
    changed = copy.deepcopy(facts)
    changed["gpus"][index].update(changes)
    return changed


# --- the recorded nodes --------------------------------------------------------------------


def test_healthy_h100_passes_every_check(h100: dict[str, Any]) -> None:
    results = judge(h100, **H100_EXPECT)
    assert [r.id for r in results] == [i for i in CHECK_IDS if i not in NOT_APPLICABLE]
    assert findings(results) == []
    messages = {r.id: r.message for r in results}
    assert messages["gpu.pcie.width"] == "8/8 GPUs at PCIe x16"
    assert messages["gpu.pcie.gen"] == "8/8 GPUs at PCIe Gen5"
    assert messages["gpu.vbios"] == "8/8 GPUs on VBIOS 96.00.99.00.01"
    assert messages["gpu.nvlink.state"] == "8/8 GPUs with all 18 NVLink links active"
    assert all(r.gpu is None for r in results)


# fault -> its one finding (check id, status, GPU index); None: a node-wide one.
GPU_FAULTS = {
    "gpu-missing": ("gpu.count", "fail", None),
    "row-remap-pending": ("gpu.row_remap", "fail", 6),
    "pcie-x8": ("gpu.pcie.width", "fail", 2),
    "nvlink-down": ("gpu.nvlink.state", "fail", 5),
    "thermal-slowdown": ("gpu.clocks", "fail", 1),
    "vbios-mismatch": ("gpu.vbios", "fail", 7),
}


@pytest.mark.parametrize("fault", sorted(GPU_FAULTS))
def test_each_gpu_fault_gives_exactly_its_finding(
    fault: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    facts = node_facts(monkeypatch, build_sysroot(tmp_path, fault))
    results = evaluate_facts(facts, H100_EXPECT) + judge(facts, **H100_EXPECT)
    assert findings(results) == [GPU_FAULTS[fault]]
    finding = next(r for r in results if r.status != "pass")
    if finding.gpu is not None:
        gpu = facts["gpus"][finding.gpu["index"]]
        assert finding.gpu == {
            "index": gpu["index"],
            "pci_bus_id": gpu["pci_bus_id"],
            "serial": gpu["serial"],
        }
        assert finding.message.startswith(f"{gpu_label(gpu)}: ")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("pcie-x8", "GPU 2 (00000000:3A:00.0, SN 1654223028120): PCIe link trained at x8 of x16"),
        (
            "nvlink-down",
            "GPU 5 (00000000:AB:00.0, SN 1654223028342): 17 of 18 NVLink links active; "
            "down: link 7",
        ),
        (
            "thermal-slowdown",
            "GPU 1 (00000000:2A:00.0, SN 1654223027556): clocks held down by hw_slowdown, "
            "hw_thermal",
        ),
        (
            "vbios-mismatch",
            "GPU 7 (00000000:DB:00.0, SN 1654223028419): VBIOS 96.00.89.00.01, "
            "the node's other GPUs run 96.00.99.00.01",
        ),
        (
            "row-remap-pending",
            "GPU 6 (00000000:BA:00.0, SN 1654223027095): row remap pending until the GPU is "
            "reset (1 correctable and 0 uncorrectable rows remapped)",
        ),
    ],
)
def test_fault_messages_name_the_gpu(
    fault: str, message: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    facts = node_facts(monkeypatch, build_sysroot(tmp_path, fault))
    assert [r.message for r in judge(facts) if r.status != "pass"] == [message]


# --- thresholds from expect ----------------------------------------------------------------


def test_expect_overrides_the_defaults(h100: dict[str, Any]) -> None:
    facts = with_gpu(h100, 3, ecc={**h100["gpus"][3]["ecc"], "volatile_corrected": 7})
    facts["gpus"][3]["pcie"]["replays"] = 12
    assert findings(judge(facts)) == []
    assert findings(judge(facts, max_ecc_correctable=5, max_pcie_replays=10)) == [
        ("gpu.ecc.correctable", "warn", 3),
        ("gpu.pcie.replays", "warn", 3),
    ]


def test_max_gpu_temp_fails_above_it(h100: dict[str, Any]) -> None:
    # Temperatures 31-35 C: a 33 C limit fails the three hotter GPUs.
    results = [r for r in judge(h100, max_gpu_temp_c=33) if r.id == "gpu.temperature"]
    assert [(r.status, r.gpu["index"] if r.gpu else None, r.observed) for r in results] == [
        ("fail", 3, 34),
        ("fail", 7, 35),
    ]
    assert results[0].message.endswith(": 34 C (limit 33 C)")


def test_near_slowdown_warns_without_a_limit(h100: dict[str, Any]) -> None:
    facts = with_gpu(h100, 4, temperature_c=84)  # slowdown at 89 C
    results = [r for r in judge(facts) if r.id == "gpu.temperature"]
    assert [(r.status, r.gpu and r.gpu["index"]) for r in results] == [("warn", 4)]
    assert findings(judge(with_gpu(h100, 4, temperature_c=83))) == []


def test_power_fraction(h100: dict[str, Any]) -> None:
    assert findings(judge(h100, max_power_fraction=0.11)) == []  # at most 73.4 W of 700 W
    result = judge(with_gpu(h100, 0, power_w=91.0), max_power_fraction=0.125)
    assert findings(result) == [("gpu.power", "warn", 0)]


def test_nvlink_links_demands_an_exact_count(h100: dict[str, Any]) -> None:
    assert findings(judge(h100, nvlink_links=18)) == []
    wrong = judge(h100, nvlink_links=12)
    assert findings(wrong) == [("gpu.nvlink.state", "fail", i) for i in range(8)]
    message = next(r.message for r in wrong if r.id == "gpu.nvlink.state")
    assert message.endswith("18 NVLink links active (expected 12)")


def test_modes_follow_expect(h100: dict[str, Any]) -> None:
    ids = {r.id for r in judge(h100, mig_mode="any", persistence_mode="any", ecc="any")}
    assert not ids & {"gpu.mig", "gpu.persistence", "gpu.ecc.mode"}
    assert findings(judge(h100, persistence_mode="off")) == [
        ("gpu.persistence", "fail", i) for i in range(8)
    ]
    # YAML 1.1 reads a bare `on` as true.
    assert findings(judge(h100, persistence_mode=True, ecc=True)) == []
    assert not any(r.id == "gpu.vbios" for r in judge(h100, vbios_uniform=False))


def test_bad_expectation_is_an_error_for_its_check_only(h100: dict[str, Any]) -> None:
    results = judge(h100, max_pcie_replays="lots", mig_mode="maybe")
    assert findings(results) == [("gpu.mig", "error", None), ("gpu.pcie.replays", "error", None)]
    assert "invalid expectation max_pcie_replays" in next(
        r.message for r in results if r.id == "gpu.pcie.replays"
    )


# --- each criterion ------------------------------------------------------------------------


def test_stray_processes_fail(h100: dict[str, Any]) -> None:
    procs = [{"pid": 4242, "name": "python3", "used_memory_mib": 20480}]
    facts = with_gpu(h100, 2, processes=procs)
    results = [r for r in judge(facts) if r.id == "gpu.processes"]
    assert findings(results) == [("gpu.processes", "fail", 2)]
    assert results[0].message.endswith(
        "1 compute processes (at most 0): pid 4242 python3, 20480 MiB"
    )
    assert findings(judge(facts, max_gpu_processes=1)) == []


def test_ecc_criteria(h100: dict[str, Any]) -> None:
    ecc = h100["gpus"][0]["ecc"]
    assert findings(judge(with_gpu(h100, 0, ecc={**ecc, "volatile_uncorrected": 1}))) == [
        ("gpu.ecc.uncorrected", "fail", 0)
    ]
    assert findings(judge(with_gpu(h100, 0, ecc={**ecc, "volatile_corrected": 101}))) == [
        ("gpu.ecc.correctable", "warn", 0)
    ]
    # ECC off: the mode fails, and its counters are not judged.
    off = dict.fromkeys(ecc, None) | {"enabled": False}
    assert findings(judge(with_gpu(h100, 0, ecc=off))) == [("gpu.ecc.mode", "fail", 0)]


def test_row_remap_failure(h100: dict[str, Any]) -> None:
    rows = {"correctable": 0, "uncorrectable": 512, "pending": False, "failed": True}
    results = judge(with_gpu(h100, 5, row_remap=rows))
    assert findings(results) == [("gpu.row_remap", "fail", 5)]
    assert "row remapping failed" in next(r.message for r in results if r.id == "gpu.row_remap")


def test_retired_pages_pending_on_an_older_gpu(h100: dict[str, Any]) -> None:
    pages = {"single_bit": 2, "double_bit": 1, "pending": True}
    facts = with_gpu(h100, 1, retired_pages=pages, row_remap=None)
    assert findings(judge(facts)) == [("gpu.retired_pages", "fail", 1)]
    facts["gpus"][1]["retired_pages"]["pending"] = False
    passed = [r for r in judge(facts) if r.id == "gpu.retired_pages"]
    assert passed[0].message == "1/1 GPUs with no retired pages pending (7 did not report it)"


def test_pcie_generation_down_only_warns(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts["gpus"][0]["pcie"]["gen"] = 1  # an idle GPU drops to 2.5 GT/s
    results = judge(facts)
    assert findings(results) == [("gpu.pcie.gen", "warn", 0)]


@pytest.mark.parametrize(
    ("events", "status"),
    [
        (["gpu_idle"], None),
        (["sw_power_cap"], None),
        (["sw_thermal"], "warn"),
        (["hw_power_brake"], "fail"),
        (["sw_thermal", "hw_thermal"], "fail"),
    ],
)
def test_clock_events(h100: dict[str, Any], events: list[str], status: str | None) -> None:
    found = findings(judge(with_gpu(h100, 6, clock_events=events)))
    assert found == ([("gpu.clocks", status, 6)] if status else [])


def test_nvlink_error_counters_warn(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    links = facts["gpus"][4]["nvlink"]
    links[2].update(replay=150, crc_flit=60, crc_data=60)
    links[9]["recovery"] = 11
    results = [r for r in judge(facts) if r.id == "gpu.nvlink.errors"]
    assert findings(results) == [("gpu.nvlink.errors", "warn", 4)]
    assert results[0].message.endswith(
        "NVLink link 2 150 replay errors (over 100); link 2 120 CRC errors (over 100); "
        "link 9 11 recovery errors (over 10)"
    )
    assert results[0].observed == {"replay": 150, "recovery": 11, "crc_flit": 60, "crc_data": 60}


NVLINK_COUNTERS = ("replay", "recovery", "crc_flit", "crc_data")


def without_counters(gpu: dict[str, Any], *names: str) -> None:
    for link in gpu["nvlink"]:
        link.update(dict.fromkeys(names or NVLINK_COUNTERS))


def test_nvlink_errors_unreadable_everywhere_is_a_skip_not_a_pass(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    for gpu in facts["gpus"]:
        without_counters(gpu)
    results = [r for r in judge(facts) if r.id == "gpu.nvlink.errors"]
    assert [(r.status, r.message) for r in results] == [
        ("skip", "NVLink error counters not readable")
    ]


def test_nvlink_links_without_counters_are_not_judged(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    without_counters(facts["gpus"][2])
    (result,) = [r for r in judge(facts) if r.id == "gpu.nvlink.errors"]
    assert result.status == "pass"
    assert result.message.startswith("7/7 GPUs with NVLink error counters within")
    assert result.message.endswith("(1 did not report it)")


def test_nvlink_unread_counter_is_none_not_zero(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    for gpu in facts["gpus"]:
        without_counters(gpu, "crc_data")
    (result,) = [r for r in judge(facts) if r.id == "gpu.nvlink.errors"]
    assert result.status == "pass"
    assert result.observed[0] == {"replay": 0, "recovery": 0, "crc_flit": 0, "crc_data": None}


@pytest.mark.parametrize(
    ("fabric", "status"),
    [
        ({"state": "in_progress", "status": 0}, "fail"),
        ({"state": "not_started", "status": 0}, "fail"),
        ({"state": "completed", "status": 18}, "fail"),
        ({"state": "not_supported", "status": 0}, None),
        (None, None),
    ],
)
def test_fabric_state(h100: dict[str, Any], fabric: Any, status: str | None) -> None:
    found = findings(judge(with_gpu(h100, 0, fabric=fabric)))
    assert found == ([("gpu.fabric", status, 0)] if status else [])


def test_fabric_not_judged_when_fabric_manager_is_off(h100: dict[str, Any]) -> None:
    facts = with_gpu(h100, 0, fabric={"state": "not_started", "status": 0})
    assert not any(r.id == "gpu.fabric" for r in judge(facts, fabric_manager="off"))


# --- unreported readings -------------------------------------------------------------------


def test_a_gpu_without_a_reading_is_skipped_for_that_check(h100: dict[str, Any]) -> None:
    facts = with_gpu(h100, 3, vbios=None, clock_events=None, temperature_c=None, power_w=None)
    results = {r.id: r for r in judge(facts)}
    assert findings(list(results.values())) == []
    assert results["gpu.clocks"].message.endswith("(1 did not report it)")
    assert results["gpu.clocks"].message.startswith("7/7 GPUs ")


def test_a_reading_no_gpu_reports_is_one_skip(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    for gpu in facts["gpus"]:
        gpu.update(clock_events=None, pcie=dict.fromkeys(gpu["pcie"]))
    results = [r for r in judge(facts) if r.status == "skip"]
    assert [(r.id, r.message) for r in results] == [
        ("gpu.pcie.width", "PCIe link width not reported"),
        ("gpu.pcie.gen", "PCIe link generation not reported"),
        ("gpu.pcie.replays", "PCIe replay counter not reported"),
        ("gpu.clocks", "clock event reasons not reported"),
    ]


def test_hardware_without_nvlink_or_fabric_gets_no_such_results(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    for gpu in facts["gpus"]:
        gpu.update(nvlink=[], fabric={"state": "not_supported", "status": 0}, row_remap=None)
    ids = {r.id for r in judge(facts)}
    assert not ids & {"gpu.nvlink.state", "gpu.nvlink.errors", "gpu.fabric", "gpu.row_remap"}
    # Unless the inventory demands links.
    assert findings(judge(facts, nvlink_links=4)) == [
        ("gpu.nvlink.state", "fail", i) for i in range(8)
    ]


def test_identity_only_gpus_never_crash(h100: dict[str, Any]) -> None:
    keep = ("index", "name", "uuid", "memory_total_mib", "pci_bus_id")
    facts = {**h100, "gpus": [{key: gpu[key] for key in keep} for gpu in h100["gpus"]]}
    results = judge(facts)
    assert {r.status for r in results} == {"skip"}
    assert "gpu.vbios" in {r.id for r in results}


# --- nodes without NVML readings -----------------------------------------------------------


def test_procfs_facts_give_one_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = build_sysroot(tmp_path)
    (root / "dcctl-recorded" / "nvml.json").unlink()
    facts = node_facts(monkeypatch, root)
    assert facts["gpu_source"] == "procfs"
    results = judge(facts)
    assert [(r.id, r.status, r.message) for r in results] == [
        (
            "gpu.health",
            "skip",
            "no NVML recording (/dcctl-recorded/nvml.json); GPU health checks skipped",
        )
    ]


def procfs_facts(h100: dict[str, Any], kind: str, message: str) -> dict[str, Any]:
    """The node's facts as the GPU probe reports them when NVML gave no readings."""
    gpus = [
        {key: gpu[key] for key in ("index", "name", "uuid", "pci_bus_id")} for gpu in h100["gpus"]
    ]
    facts = {
        **h100,
        "gpus": gpus,
        "gpu_source": "procfs",
        "nvml_error": {"kind": kind, "message": message},
    }
    if kind != "unavailable":
        facts["probe_errors"] = {"nvml": message}
    return facts


def test_missing_pynvml_is_a_skip_that_says_so(h100: dict[str, Any]) -> None:
    (result,) = judge(procfs_facts(h100, "unavailable", "pynvml not available on the node"))
    assert (result.status, result.message) == ("skip", NVML_SKIP_MESSAGE)
    assert NVML_SKIP_MESSAGE == "pynvml not available on the node; GPU health checks skipped"


def test_nvml_init_failure_with_the_driver_loaded_fails(h100: dict[str, Any]) -> None:
    reason = "NVMLError_LibRmVersionMismatch: RM has detected an NVML/RM version mismatch."
    (result,) = judge(procfs_facts(h100, "failed", reason))
    assert (result.id, result.status) == ("gpu.health", "fail")
    assert result.message == (f"NVML failed: {reason}; nvidia-smi and CUDA will fail the same way")
    # Even when the driver lists no GPU: a broken NVML is a finding, a missing pynvml is not.
    assert [r.status for r in judge({**procfs_facts(h100, "failed", reason), "gpus": []})] == [
        "fail"
    ]
    assert judge({**procfs_facts(h100, "unavailable", "x"), "gpus": []}) == []


def test_nvml_timeout_fails(h100: dict[str, Any]) -> None:
    (result,) = judge(procfs_facts(h100, "timeout", "NVML did not answer within 20 s"))
    assert (result.status, result.message) == ("fail", "NVML did not answer within 20 s")


def test_broken_reader_is_an_error(h100: dict[str, Any]) -> None:
    (result,) = judge(procfs_facts(h100, "error", "TypeError: bad binding"))
    assert (result.status, result.message) == ("error", "NVML read failed: TypeError: bad binding")


def test_recorded_nvml_failure_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = build_sysroot(tmp_path)
    reason = "NVMLError_LibRmVersionMismatch: RM has detected an NVML/RM version mismatch."
    (root / "dcctl-recorded" / "nvml.json").write_text(json.dumps({"error": reason}))
    facts = node_facts(monkeypatch, root)
    assert [(r.id, r.status) for r in judge(facts, **H100_EXPECT)] == [("gpu.health", "fail")]
    # The driver's own GPU list still counts and names the GPUs.
    assert findings(evaluate_facts(facts, {"gpu_count": 8, "gpu_model": "*H100*"})) == []


LOST = "NVMLError_GpuIsLost: GPU is lost"


def test_a_lost_gpu_fails_alone(h100: dict[str, Any]) -> None:
    facts = copy.deepcopy(h100)
    facts["gpus"][3] = {"index": 3, "pci_bus_id": "00000000:5D:00.0", "error": LOST}
    results = judge(facts)
    assert findings(results) == [("gpu.health", "fail", 3)]
    assert results[0].message == f"GPU 3 (00000000:5D:00.0): NVML cannot read this GPU: {LOST}"
    assert results[0].gpu == {"index": 3, "pci_bus_id": "00000000:5D:00.0", "serial": None}
    # The other seven keep their full judgement, and are not "not reporting".
    messages = {r.id: r.message for r in results if r.status == "pass"}
    assert messages["gpu.pcie.width"] == "7/7 GPUs at PCIe x16"
    assert set(messages) == {i for i in CHECK_IDS if i not in NOT_APPLICABLE}


def test_a_lost_gpu_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = build_sysroot(tmp_path)
    recording = root / "dcctl-recorded" / "nvml.json"
    raw = json.loads(recording.read_text())
    raw["devices"][5] = {"index": 5, "error": LOST}  # lost before its bus id was read
    recording.write_text(json.dumps(raw))
    facts = node_facts(monkeypatch, root)
    results = evaluate_facts(facts, H100_EXPECT) + judge(facts, **H100_EXPECT)
    assert findings(results) == [("gpu.health", "fail", 5)]
    assert next(r.message for r in results if r.status != "pass") == (
        f"GPU 5: NVML cannot read this GPU: {LOST}"
    )


def test_no_gpus_no_results() -> None:
    assert judge({"gpus": [], "gpu_source": "none"}) == []


def test_failed_gpu_probe_is_an_error() -> None:
    facts = {"gpus": None, "gpu_source": None, "probe_errors": {"gpu": "OSError: boom"}}
    (result,) = judge(facts)
    assert (result.id, result.status) == ("gpu.health", "error")
    assert "OSError: boom" in result.message
