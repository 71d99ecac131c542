"""XID severity follows NVIDIA's Xid catalog ("Resolution Bucket (Immediate Action)"), and an
inventory can override it per XID. NVSwitch SXids follow NVIDIA's Fabric Manager User Guide.

Sources of the actions in dcctl/evaluate/xids.py (pinned, source by source, below):
- NVIDIA, https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html, table "Xids"
  (the spreadsheet https://docs.nvidia.com/Xid-Catalog.xlsx);
- leptonai/gpud, components/accelerator/nvidia/xid/catalog_generated.go at commit
  4a8de33a3f02e207f39e9023d67125592d599731, generated from that spreadsheet;
- a public node-check script's transcription of the r590 catalog's immediate-action column
  (found by code search, "Classification aligned with NVIDIA XID Errors r590 catalog"). It
  files 157 under CONTACT_SUPPORT; NVIDIA's immediate action is IGNORE (CONTACT_SUPPORT is
  the investigatory action), and the table follows NVIDIA.
"""

from __future__ import annotations

from typing import Any

import pytest

from dcctl.evaluate.node_health import evaluate_node_health
from dcctl.evaluate.xids import (
    ACTION_STATUS,
    SXID_NONFATAL_STATUS,
    SXID_NONFATAL_STATUS_BY_SXID,
    XIDS,
    sxid_status,
)
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS

RESTART_APP = (
    8, 11, 13, 25, 31, 32, 39, 40, 41, 60, 68, 69, 70, 71, 72, 75, 76, 77, 80, 82, 83, 84, 85,
    86, 88, 89, 94, *range(96, 106), *range(126, 136), 139,
)  # fmt: skip
IGNORE = (
    14, 37, 38, 43, 44, 63, 66, 67, 92, 93, 106, 107, 108, 121, 137, 141, 152, 153, 157, 160,
    161,
)  # fmt: skip

# Every row of the table, by immediate action.
CATALOG = {
    **dict.fromkeys(
        [46, 62, 64, 95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158], "RESET_GPU"
    ),
    **dict.fromkeys(range(144, 151), "WORKFLOW_NVLINK5_ERR"),
    **dict.fromkeys(RESTART_APP, "RESTART_APP"),
    **dict.fromkeys(IGNORE, "IGNORE"),
    **dict.fromkeys(
        [56, 57, 58, 73, 81, *range(111, 119), 122, 123, 124, 125, 142], "CONTACT_SUPPORT"
    ),
    45: "WORKFLOW_XID_45",
    54: "CHECK_MECHANICALS",
    78: "UPDATE_SWFW",
    79: "RESTART_BM",
    151: "RESTART_VM",
    48: "WORKFLOW_XID_48",
    74: "WORKFLOW_NVLINK_ERR",
    159: "CHECK_UVM",
    154: "XID_154",
}


def test_table_follows_the_catalog() -> None:
    assert {xid: info.action for xid, info in XIDS.items()} == CATALOG
    for info in XIDS.values():
        assert info.status == ACTION_STATUS[info.action]


# Rows of NVIDIA's page (Type | Code | Mnemonic | Description | A100 | H100 | B100 | GB200 |
# Immediate Action | Investigatory Action), as the page prints them.
NVIDIA_PAGE = {
    # "XID | 8 | ROBUST_CHANNEL_FIFO_ERROR_IDLE_TIMEOUT | GPU stopped processing | YES | YES |
    # YES | YES | RESTART_APP | CONTACT_SUPPORT"
    8: "RESTART_APP",
    # "XID | 11 | ROBUST_CHANNEL_GR_ERROR_MISSING_HW | Invalid or corrupted push buffer stream
    # | YES | YES | YES | YES | RESTART_APP | CHECK_APP/CUDA"
    11: "RESTART_APP",
    # "XID | 13 | ROBUST_CHANNEL_GR_EXCEPTION / ROBUST_CHANNEL_GR_ERROR_SW_NOTIFY | Graphics
    # Engine Exception | YES | YES | YES | YES | RESTART_APP | WORKFLOW_XID_13"
    13: "RESTART_APP",
    # "XID | 45 | ROBUST_CHANNEL_PREEMPTIVE_REMOVAL | ... | WORKFLOW_XID_45 | Solo: RESTART_FM
    # Not Solo: IGNORE (follow other Xid)"
    45: "WORKFLOW_XID_45",
    # "XID | 46 | ROBUST_CHANNEL_GPU_TIMEOUT_ERROR | GPU stopped processing | YES | YES | YES |
    # YES | RESET_GPU | CONTACT_SUPPORT"
    46: "RESET_GPU",
    # "XID | 56 | DISPLAY_CHANNEL_EXCEPTION | Unused | NO | NO | NO | NO | CONTACT_SUPPORT |
    # N/A; Unused"
    56: "CONTACT_SUPPORT",
    # "XID | 68 | ROBUST_CHANNEL_NVDEC0_ERROR | NVDEC0 Exception | YES | YES | YES | YES |
    # RESTART_APP | CONTACT_SUPPORT"
    68: "RESTART_APP",
    # "XID | 70 | ROBUST_CHANNEL_CE3_ERROR | CE3: Unknown Error | YES | YES | YES | YES |
    # RESTART_APP | CONTACT_SUPPORT"
    70: "RESTART_APP",
    # "XID | 157 | RESOURCE_RETIREMENT_FAILURE | Resource Retirement Failure | NO | YES | YES |
    # YES | IGNORE | CONTACT_SUPPORT | No possible repairs are possible due to lack of
    # resources."
    157: "IGNORE",
}

# leptonai/gpud components/accelerator/nvidia/xid/catalog_generated.go (4a8de33a3f02):
# "// catalogEntries mirrors NVIDIA's XID catalog (sheet: "Catalog")."
GPUD_CATALOG_GENERATED = {
    # {Code: 32, Mnemonic: "ROBUST_CHANNEL_PBDMA_ERROR", ..., ImmediateResolution: "RESTART_APP"
    32: "RESTART_APP",
    # {Code: 38, Mnemonic: "ROBUST_CHANNEL_FECS_ERR_WATCHDOG_TIMEOUT", ...,
    # ImmediateResolution: "IGNORE"
    38: "IGNORE",
    # {Code: 62, Mnemonic: "PMU_HALT_ERROR", ..., ImmediateResolution: "RESET_GPU"
    62: "RESET_GPU",
    # {Code: 64, Mnemonic: "INFOROM_DRAM_RETIREMENT_FAILURE", ..., ImmediateResolution:
    # "RESET_GPU"
    64: "RESET_GPU",
    # {Code: 78, Mnemonic: "VGPU_START_ERROR", ..., ImmediateResolution: "UPDATE_SWFW"
    78: "UPDATE_SWFW",
    # {Code: 96, Mnemonic: "ROBUST_CHANNEL_NVDEC5_ERROR", ..., ImmediateResolution:
    # "RESTART_APP"
    96: "RESTART_APP",
    # {Code: 105, Mnemonic: "ROBUST_CHANNEL_NVJPG7_ERROR", ..., ImmediateResolution:
    # "RESTART_APP"
    105: "RESTART_APP",
    # {Code: 113, Mnemonic: "DP_LT_FAILURE", Description: "Unused", ImmediateResolution:
    # "CONTACT_SUPPORT"
    113: "CONTACT_SUPPORT",
    # {Code: 124, Mnemonic: "SPI_PMU_RPC_ERASE_FAIL", Description: "Unused",
    # ImmediateResolution: "CONTACT_SUPPORT"
    124: "CONTACT_SUPPORT",
    # {Code: 157, Mnemonic: "RESOURCE_RETIREMENT_FAILURE", ..., ImmediateResolution: "IGNORE"
    157: "IGNORE",
}

# The node-check script ("# Classification aligned with NVIDIA XID Errors r590 catalog /
# "Resolution Bucket (Immediate Action)" column"), where it agrees with NVIDIA:
NODE_CHECK_SCRIPT = {
    54: "CHECK_MECHANICALS",  # 54) ... code_group="CHECK_MECHANICALS"
    79: "RESTART_BM",  # 79) ... code_group="RESTART_BM"
    151: "RESTART_VM",  # 151) ... code_group="RESTART_VM"
    48: "WORKFLOW_XID_48",  # 48) ... code_group="WORKFLOW_XID_48"
    109: "RESET_GPU",  # 109|110|119|120|136|140|143|155|156|158) ... code_group="RESET_GPU"
    74: "WORKFLOW_NVLINK_ERR",  # 74) ... code_group="WORKFLOW_NVLINK_ERR"
    149: "WORKFLOW_NVLINK5_ERR",  # 144|145|146|147|148|149|150) ...
    159: "CHECK_UVM",  # 159) ... code_group="CHECK_UVM"
    126: "RESTART_APP",  # 13|31|94|126) ... code_group="RESTART_APP"
    121: "IGNORE",  # 43|63|92|121) ... code_group="IGNORE"
    125: "CONTACT_SUPPORT",  # 81|125) ... code_group="CONTACT_SUPPORT"
}
# ... and where it does not: `157) code_severity="MONITOR"; code_group="CONTACT_SUPPORT"`.
# NVIDIA's immediate action for 157 is IGNORE (NVIDIA_PAGE above); the table follows NVIDIA.
NODE_CHECK_SCRIPT_OVERRULED = {157: "CONTACT_SUPPORT"}


@pytest.mark.parametrize(
    "source", [NVIDIA_PAGE, GPUD_CATALOG_GENERATED, NODE_CHECK_SCRIPT], ids=str
)
def test_rows_pinned_to_their_source(source: dict[int, str]) -> None:
    assert {xid: XIDS[xid].action for xid in source} == source


def test_where_sources_disagree_nvidia_wins() -> None:
    for xid, action in NODE_CHECK_SCRIPT_OVERRULED.items():
        assert XIDS[xid].action == NVIDIA_PAGE[xid] != action


@pytest.mark.parametrize(
    ("xid", "status"),
    [
        (63, "count"),  # IGNORE
        (92, "count"),
        (121, "count"),
        (157, "count"),  # IGNORE (was CONTACT_SUPPORT: fail)
        (13, "count"),  # RESTART_APP
        (68, "count"),  # video decoder: RESTART_APP (was fail)
        (71, "count"),  # copy engine: RESTART_APP (was fail)
        (99, "count"),  # JPEG decoder: RESTART_APP (was fail)
        (45, "count"),  # WORKFLOW_XID_45
        (73, "fail"),  # "Unused": CONTACT_SUPPORT
        (115, "fail"),
        (46, "fail"),  # RESET_GPU
        (109, "fail"),  # RESET_GPU: was never reported before
        (79, "fail"),
        (149, "fail"),
        (159, "warn"),
        (78, "warn"),  # UPDATE_SWFW
    ],
)
def test_status_per_catalog_action(xid: int, status: str) -> None:
    assert XIDS[xid].status == status


# NVIDIA Fabric Manager User Guide, "Non-Fatal NVSwitch SXid Errors" (SXid & Error String |
# Guest VM Impact | Guest VM Recovery | Other Guest VM Impact):
@pytest.mark.parametrize(
    ("sxid", "status"),
    [
        # "11012, 11021, ... 24003 (Single bit ECC errors) | No guest VM impact because the
        # NVSwitch hardware will auto correct the ECC errors. | Not Applicable. | No Impact."
        (11012, "count"),
        (19071, "count"),
        (24003, "count"),
        # "22013(Minion Link DLREQ interrupt | This SXid can be safely ignored."
        (22013, "count"),
        # "12028 (egress non-posted PRIV error) | The corresponding GPU NVLink traffic will be
        # stalled, and subsequent GPU access will hang. ... | Restart the guest VM"
        (12028, "fail"),
        (11004, "fail"),
        # "19084(AN1 Heartbeat Timeout Error) | ... | Reset all GPUs and all NVSwitches"
        (19084, "fail"),
        # "20001 (TX Replay Error) | ... might impact the NVLink throughput"
        (20001, "warn"),
        (20012, "warn"),
        # Not in the guide's tables: the default.
        (20009, SXID_NONFATAL_STATUS),
    ],
)
def test_non_fatal_sxid_per_fabric_manager_guide(sxid: int, status: str) -> None:
    assert sxid_status(sxid, fatal=False) == status


def test_fatal_sxids_fail_and_garbled_numbers_take_the_default() -> None:
    assert {sxid_status(sxid, fatal=True) for sxid in SXID_NONFATAL_STATUS_BY_SXID} == {"fail"}
    assert sxid_status(24007, fatal=True) == "fail"
    assert sxid_status("22013", fatal=False) == SXID_NONFATAL_STATUS == "warn"
    assert sxid_status(None, fatal=False) == "warn"


def node(*events: tuple[int, str]) -> dict[str, Any]:
    xids = [
        {"xid": xid, "pci": "0000:18:00", "text": text, "time": "2026-11-28T07:00:00+00:00"}
        for xid, text in events
    ]
    return {
        "gpu_source": "nvml",
        "gpus": [],
        "uptime_s": 10**7,
        "kernel_log": {"source": "journal", "window_h": 24, "xids": xids, "sxids": []},
    }


def xid_statuses(facts: dict[str, Any], **expect: Any) -> list[tuple[str, str]]:
    results = evaluate_node_health(facts, {**HEALTH_DEFAULTS, **expect})
    return [(r.status, r.message) for r in results if r.id == "kernel.xid"]


# Real lines: the forum post in tests/fixtures/real/kernel-log/bare-messages.txt, and NVIDIA's
# NVML recovery actions (None, GPU Reset, Node Reboot, Drain P2P, Drain and Reset).
XID_154_RESET = (
    "NVRM: Xid (PCI:0000:01:00): 154, GPU recovery action changed from 0x0 (None) to 0x1 "
    "(GPU Reset Required)"
)


def test_xid_154_fails_when_it_asks_for_a_reset() -> None:
    ((status, message),) = xid_statuses(node((154, XID_154_RESET)))
    assert status == "fail"
    assert "GPU recovery action changed; NVIDIA's Xid catalog: XID_154" in message


def test_xid_154_back_to_none_only_warns() -> None:
    back = XID_154_RESET.replace(
        "0x0 (None) to 0x1 (GPU Reset Required)", "0x1 (GPU Reset Required) to 0x0 (None)"
    )
    assert [status for status, _ in xid_statuses(node((154, back)))] == ["warn"]


def test_expect_overrides_the_catalog_per_xid() -> None:
    facts = node((63, "NVRM: Xid (PCI:0000:18:00): 63, row remapper event"), (13, "x"))
    ((status, message),) = xid_statuses(facts, xid_status={63: "fail", 13: "ignore"})
    assert status == "fail"
    assert message.endswith("; fail (expect.xid_status)")
    # JSON carries the keys as strings.
    assert xid_statuses(facts, xid_status={"63": "warn"})[0][0] == "warn"
    assert xid_statuses(facts, xid_status={"79": "count"})[0][0] == "pass"


@pytest.mark.parametrize("value", [[63], {63: "bad"}, {"x": "fail"}, {63: 1}])
def test_bad_override_is_an_error_result(value: Any) -> None:
    ((status, message),) = xid_statuses(node((63, "x")), xid_status=value)
    assert status == "error"
    assert message.startswith("invalid expectation xid_status")
