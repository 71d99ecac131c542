"""Kernel-log lines quoted in public bug reports (tests/fixtures/real/kernel-log/, each file
naming its source): every one parsed with the right XID, GPU, process and MIG instance, and
judged end to end from a recorded node whose kernel log is that report's."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sysroots import H100_EXPECT, build_sysroot

from dcctl.evaluate.node import evaluate_node
from dcctl.node.facts import collect_facts
from dcctl.node.probes import kernel_log
from dcctl.node.probes.kernel_log import parse_kernel_log

REAL = Path(__file__).parent.parent / "fixtures" / "real" / "kernel-log"
PARAMS = {"scratch_dir": "/var/tmp/dcctl", "xid_window_h": 24, "dcgm_level": 1}
YEARS_H = 24 * 365 * 5  # a window that holds every line of a report


def read(name: str) -> str:
    return (REAL / name).read_text()


def events(facts: dict[str, Any], kind: str) -> list[tuple[Any, ...]]:
    """(key fields..., pid, name) of each listed event of `kind`, in log order."""
    fields = {"xids": ("xid", "pci"), "nvrm_faults": ("fault", "pci"), "sxids": ("sxid", "device")}[
        kind
    ]
    return [(*(e[f] for f in fields), e.get("pid"), e.get("name")) for e in facts[kind]]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Any:
    """dmesg -T and syslog print the node's local time: the tests read them in UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# file -> (kind, [(key fields..., pid, name)]) of every event in it, in log order.
FRAMED: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "dmesg-ctime-gpud-pr46.txt": (
        "xids",
        [(13, "0000:cb:00", None, None)] * 3 + [(109, "0000:cb:00", 1797828, "pt_main_thread")],
    ),
    "dmesg-ctime-akash-support-244.txt": (
        "xids",
        [
            (43, "0000:00:05", 1045242, "pt_main_thread"),
            (43, "0000:00:05", 1084984, "pt_main_thread"),
            (31, "0000:00:07", 2512125, "python3.10"),
            (94, "0000:00:08", None, None),
        ],
    ),
    "dmesg-plain-bumblebee-677.txt": (
        "xids",
        [(32, "0000:01:00", None, None)] * 2 + [(31, "0000:01:00", None, None)],
    ),
    "dmesg-plain-dra-driver-904.txt": ("xids", [(43, "0009:01:00", 3188489, "trigger_xid")]),
    "dmesg-plain-nvsentinel-155.txt": (
        "nvrm_faults",
        [("fallen_off_bus", "0000:b3:00.0", None, None)],
    ),
    "dmesg-plain-open-gpu-kernel-modules-789.txt": (
        "nvrm_faults",
        [("init_failed", "0000:98:00.0", None, None)],
    ),
    "dmesg-plain-gpu-operator-649.txt": (
        "nvrm_faults",
        [
            ("init_failed", "0000:04:01.0", None, None),
            ("init_failed", "0000:04:02.0", None, None),
        ],
    ),
    "syslog-gpu-operator-1146.txt": (
        "nvrm_faults",
        [("init_failed", "0000:0a:00.0", None, None)] * 2,
    ),
    "syslog-open-gpu-kernel-modules-1151.txt": (
        "nvrm_faults",
        [("init_failed", "0000:09:00.0", None, None)],
    ),
    # Three 22013 events; their "Data" and "Severity" detail lines are not events.
    "dmesg-plain-nvtrust-124.txt": ("sxids", [(22013, "0000:04:00.0", None, None)] * 3),
}


def test_every_real_sample_file_is_checked() -> None:
    names = {p.name for p in REAL.glob("*.txt")}
    assert names == {*FRAMED, "bare-messages.txt"}
    for name in names:
        assert read(name).startswith("# source: ") or "# source: " in read(name), name


@pytest.mark.parametrize("name", sorted(FRAMED))
def test_real_framed_log_parses_every_event(name: str) -> None:
    kind, expected = FRAMED[name]
    facts = parse_kernel_log(read(name), None, YEARS_H)
    assert events(facts, kind) == expected
    others = {"xids", "nvrm_faults", "sxids", "pcie_bandwidth_limited"} - {kind}
    assert all(facts[other] == [] for other in others), facts
    for event in facts[kind]:
        assert event["text"].startswith("nvidia-nvswitch3: " if kind == "sxids" else "NVRM: ")


def test_dmesg_ctime_is_read_in_local_time() -> None:
    facts = parse_kernel_log(read("dmesg-ctime-gpud-pr46.txt"), None, YEARS_H)
    assert facts["xids"][-1]["time"] == "2024-08-30T11:43:14+00:00"
    # The window counts back from the newest line: 5 s holds only the last XID.
    assert len(parse_kernel_log(read("dmesg-ctime-gpud-pr46.txt"), None, 4 / 3600)["xids"]) == 1


def test_syslog_takes_the_year_of_now_and_strips_the_seconds_since_boot() -> None:
    now = datetime(2024, 12, 2, 12, 0, tzinfo=timezone.utc)
    facts = parse_kernel_log(read("syslog-gpu-operator-1146.txt"), now, 1)
    first = facts["nvrm_faults"][0]
    assert first["time"] == "2024-12-02T11:49:53+00:00"
    assert first["text"] == "NVRM: GPU 0000:0a:00.0: RmInitAdapter failed! (0x24:0x72:1568)"
    # Read on 5 January, "Dec  2" is last year's.
    january = datetime(2025, 1, 5, tzinfo=timezone.utc)
    assert parse_kernel_log(read("syslog-gpu-operator-1146.txt"), january, 24 * 40)["nvrm_faults"][
        0
    ]["time"].startswith("2024-12-02")


def test_seconds_since_boot_are_placed_with_the_uptime() -> None:
    text = read("dmesg-plain-nvsentinel-155.txt")
    now = datetime(2025, 10, 25, 12, 0, tzinfo=timezone.utc)
    (event,) = parse_kernel_log(text, now, 1, uptime_s=2000.0)["nvrm_faults"]
    assert event["since_boot_s"] == 1843.308145
    placed = datetime.fromisoformat(event["time"])
    assert placed == now - timedelta(seconds=2000.0 - 1843.308145)
    # Logged 157 s before "now": outside a 1-minute window, inside a 3-minute one.
    assert parse_kernel_log(text, now, 1 / 60, uptime_s=2000.0)["nvrm_faults"] == []
    assert len(parse_kernel_log(text, now, 3 / 60, uptime_s=2000.0)["nvrm_faults"]) == 1


def test_seconds_since_boot_without_uptime_count_as_inside_the_window() -> None:
    (event,) = parse_kernel_log(read("dmesg-plain-nvsentinel-155.txt"), None, 1)["nvrm_faults"]
    assert event["since_boot_s"] == 1843.308145 and "time" not in event


# Message text quoted without framing -> (kind, key, extra fields), in file order.
BARE: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("xids", {"xid": 94, "pci": "0000:01:00"}, {"gpu_instance": 5, "pid": 7194}),
    ("xids", {"xid": 94, "pci": "0000:01:00"}, {"pid": 7062}),
    ("xids", {"xid": 95, "pci": "0000:01:00"}, {"pid": 7062}),
    ("xids", {"xid": 144, "pci": "0000:01:00"}, {}),
    ("xids", {"xid": 149, "pci": "0000:00:00"}, {}),
    ("xids", {"xid": 149, "pci": "0019:01:00"}, {}),
    ("xids", {"xid": 145, "pci": "0018:01:00"}, {}),
    ("xids", {"xid": 45, "pci": "0000:dc:00"}, {"pid": 1818990, "name": "python3"}),
    ("xids", {"xid": 45, "pci": "0000:ed:00"}, {"pid": 1818992, "name": "python3"}),
    ("xids", {"xid": 62, "pci": "0000:01:00"}, {}),
    ("xids", {"xid": 154, "pci": "0000:01:00"}, {}),
    ("xids", {"xid": 79, "pci": "0000:44:00"}, {}),
    ("nvrm_faults", {"fault": "fallen_off_bus", "pci": "0000:01:00.0"}, {}),
]


def test_real_messages_without_framing_match() -> None:
    lines = [line for line in read("bare-messages.txt").splitlines() if not line.startswith("#")]
    assert [kernel_log._match_event(line)[0] for line in lines] == BARE


def test_mig_compute_instance_is_kept() -> None:
    # No public report quotes one; the line is built from the driver's format string (the RC
    # code of NVIDIA/open-gpu-kernel-modules, XID attributed to a GPU and compute instance):
    # "NVRM: Xid (PCI:%04x:%02x:%02x GPU-I:%02u GPU-CI:%02u): %d, pid=%s, name=%s, %s".
    message = "NVRM: Xid (PCI:0000:3b:00 GPU-I:01 GPU-CI:02): 13, pid=9, name=a, Graphics Exception"
    found, _ = kernel_log._match_event(message)
    assert found == (
        "xids",
        {"xid": 13, "pci": "0000:3b:00"},
        {"gpu_instance": 1, "compute_instance": 2, "pid": 9, "name": "a"},
    )


# --- end to end: a recorded node whose kernel log is the report's ---------------------------

# file -> kernel.xid statuses on the healthy H100 with that log (window 24 h back from the
# newest line; seconds since boot placed with an uptime just past the last line).
JUDGED = {
    "dmesg-ctime-gpud-pr46.txt": ["fail"],  # 13: RESTART_APP (counted); 109: RESET_GPU
    "dmesg-ctime-akash-support-244.txt": ["pass"],  # 94 (the only one in 24 h): RESTART_APP
    "dmesg-plain-bumblebee-677.txt": ["pass"],
    "dmesg-plain-dra-driver-904.txt": ["pass"],
    "dmesg-plain-nvsentinel-155.txt": ["fail"],
    "dmesg-plain-open-gpu-kernel-modules-789.txt": ["fail"],
    "dmesg-plain-gpu-operator-649.txt": ["fail", "fail"],
    "syslog-gpu-operator-1146.txt": ["fail"],
    "syslog-open-gpu-kernel-modules-1151.txt": ["fail"],
    "dmesg-plain-nvtrust-124.txt": ["pass"],  # SXids only
}


def test_real_non_fatal_sxids_the_guide_calls_ignorable_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 22013 "Minion Link DLREQ interrupt": "This SXid can be safely ignored." (Fabric Manager
    # User Guide, Non-Fatal NVSwitch SXid Errors)
    root = build_sysroot(tmp_path)
    text = read("dmesg-plain-nvtrust-124.txt")
    (root / "dcctl-recorded" / "kmsg.txt").write_text(text)
    (root / "proc" / "uptime").write_text(f"{last_seconds(text) + 60:.2f} 0.00\n")
    monkeypatch.setenv("DCCTL_SYSROOT", str(root))
    results = [
        r for r in evaluate_node(collect_facts(PARAMS), H100_EXPECT) if r.id == "kernel.sxid"
    ]
    assert [r.status for r in results] == ["pass"], [r.message for r in results]
    assert "22013" in results[0].message


def last_seconds(text: str) -> float:
    seconds = [kernel_log._MONOTONIC_RE.match(line) for line in text.splitlines()]
    return max((float(f"{m.group(1)}.{m.group(2)}") for m in seconds if m), default=0.0)


@pytest.mark.parametrize("name", sorted(JUDGED))
def test_real_log_judged_end_to_end(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_sysroot(tmp_path)
    text = read(name)
    (root / "dcctl-recorded" / "kmsg.txt").write_text(text)
    if name.startswith("dmesg-plain"):
        (root / "proc" / "uptime").write_text(f"{last_seconds(text) + 60:.2f} 0.00\n")
    monkeypatch.setenv("DCCTL_SYSROOT", str(root))
    results = [r for r in evaluate_node(collect_facts(PARAMS), H100_EXPECT) if r.id == "kernel.xid"]
    assert [r.status for r in results] == JUDGED[name], [r.message for r in results]
    for result in results:
        if result.status == "fail":  # names the GPU by its address (none of the H100's)
            assert result.message.startswith("PCI 0000:"), result.message
