"""XID severity follows NVIDIA's Xid catalog ("Resolution Bucket (Immediate Action)"), and an
inventory can override it per XID.

Sources of the actions in dcctl/evaluate/xids.py:
- https://docs.nvidia.com/deploy/xid-errors/analyzing-xid-catalog.html (XIDs 1-8 read there:
  1-7 CONTACT_SUPPORT, unused; 8 RESTART_APP);
- a public node-check script's transcription of the r590 catalog's immediate-action column
  (found by code search, "Classification aligned with NVIDIA XID Errors r590 catalog"):
  54 CHECK_MECHANICALS; 79 RESTART_BM; 151 RESTART_VM; 48 WORKFLOW_XID_48; 95, 109, 110, 119,
  120, 136, 140, 143, 155, 156, 158 RESET_GPU; 74 WORKFLOW_NVLINK_ERR; 144-150
  WORKFLOW_NVLINK5_ERR; 159 CHECK_UVM; 13, 31, 94, 126 RESTART_APP; 43, 63, 92, 121 IGNORE;
  154 (its line names the recovery action); 81, 125, 157 CONTACT_SUPPORT.
"""

from __future__ import annotations

from typing import Any

import pytest

from dcctl.evaluate.node_health import evaluate_node_health
from dcctl.evaluate.xids import ACTION_STATUS, XIDS
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS

CATALOG = {
    **dict.fromkeys([95, 109, 110, 119, 120, 136, 140, 143, 155, 156, 158], "RESET_GPU"),
    **dict.fromkeys(range(144, 151), "WORKFLOW_NVLINK5_ERR"),
    **dict.fromkeys([13, 31, 94, 126, 8], "RESTART_APP"),
    **dict.fromkeys([43, 63, 92, 121], "IGNORE"),
    **dict.fromkeys([81, 125, 157], "CONTACT_SUPPORT"),
    54: "CHECK_MECHANICALS",
    79: "RESTART_BM",
    151: "RESTART_VM",
    48: "WORKFLOW_XID_48",
    74: "WORKFLOW_NVLINK_ERR",
    159: "CHECK_UVM",
    154: "XID_154",
}


def test_table_follows_the_catalog() -> None:
    assert {xid: XIDS[xid].action for xid in CATALOG} == CATALOG
    for info in XIDS.values():
        assert info.action == "" or info.status == ACTION_STATUS[info.action]


@pytest.mark.parametrize(
    ("xid", "status"),
    [
        (63, "count"),  # IGNORE
        (92, "count"),
        (121, "count"),
        (13, "count"),  # RESTART_APP
        (109, "fail"),  # RESET_GPU: was never reported before
        (79, "fail"),
        (149, "fail"),
        (159, "warn"),
    ],
)
def test_status_per_catalog_action(xid: int, status: str) -> None:
    assert XIDS[xid].status == status


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
