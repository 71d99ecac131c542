"""Kernel log probe: the parser from real journal and dmesg lines, windows, caps, the reader."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dcctl.evaluate.node_health import evaluate_node_health
from dcctl.inventory.expect_keys import HEALTH_DEFAULTS
from dcctl.node import sysroot
from dcctl.node.probes import kernel_log
from dcctl.node.probes.kernel_log import parse_kernel_log

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=timezone.utc)

# Real line shapes: journalctl -o short-iso (old "+0000" and newer "+00:00" offsets) and
# dmesg --time-format iso.
XID_79 = (
    "2026-11-28T03:41:07+0000 gpu001 kernel: NVRM: Xid (PCI:0000:18:00): 79, pid=1234, "
    "name=python, GPU has fallen off the bus."
)
XID_48 = (
    "2026-11-28T04:00:00,123456+00:00 NVRM: Xid (PCI:0000:9a:00): 48, pid='<unknown>', "
    "name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the "
    "framebuffer at partition 6, subpartition 0."
)
XID_OLD_FORMAT = "2026-11-28T05:00:00+00:00 host kernel: NVRM: Xid (0000:01:00): 62, 0cb4(2d28)"
SXID_NONFATAL = (
    "2026-11-28T06:00:00+0000 gpu001 kernel: nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, "
    "Non-fatal, Link 44 egress non-posted PRIV error (First)"
)
SXID_DETAIL = (
    "2026-11-28T06:00:00+0000 gpu001 kernel: nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, "
    "Severity 0 Engine instance 44 Sub-engine instance 00"
)
SXID_DATA = (
    "2026-11-28T06:00:00+0000 gpu001 kernel: nvidia-nvswitch0: SXid (PCI:0000:05:00.0): 12028, "
    "Data {0x00000000, 0x00000000, 0x00000000, 0x00000000}"
)
MLX5_LIMITED = (
    "2026-11-28T07:00:00,000000+00:00 mlx5_core 0000:1a:00.0: 63.008 Gb/s available PCIe "
    "bandwidth, limited by 8.0 GT/s PCIe x8 link at 0000:00:01.0 (capable of 252.048 Gb/s "
    "with 16.0 GT/s PCIe x16 link)"
)
MLX5_FULL = (
    "2026-11-28T07:00:00,000000+00:00 mlx5_core 0000:3c:00.0: 252.048 Gb/s available PCIe "
    "bandwidth (16.0 GT/s PCIe x16 link)"
)
MLX5_POWER = (
    "2026-11-28T07:00:01,000000+00:00 mlx5_core 0000:1a:00.0: mlx5_pcie_event:301:(pid 0): "
    "PCIe slot advertised sufficient power (27W)."
)


def parse(*lines: str, now: datetime | None = NOW, window_h: float = 24) -> dict:
    return parse_kernel_log("\n".join(lines) + "\n", now, window_h, "journal")


def test_xid_with_pid_and_name() -> None:
    facts = parse(XID_79)
    assert facts["source"] == "journal"
    assert facts["window_h"] == 24
    assert facts["xids"] == [
        {
            "xid": 79,
            "pci": "0000:18:00",
            "pid": 1234,
            "name": "python",
            "text": "NVRM: Xid (PCI:0000:18:00): 79, pid=1234, name=python, "
            "GPU has fallen off the bus.",
            "time": "2026-11-28T03:41:07+00:00",
        }
    ]
    assert facts["sxids"] == []
    assert facts["pcie_bandwidth_limited"] == []
    assert "omitted" not in facts


def test_xid_with_unknown_process_from_dmesg() -> None:
    (event,) = parse(XID_48)["xids"]
    assert (event["xid"], event["pci"]) == (48, "0000:9a:00")
    assert "pid" not in event and "name" not in event
    assert event["text"].startswith("NVRM: Xid (PCI:0000:9a:00): 48, pid='<unknown>'")
    assert event["time"] == "2026-11-28T04:00:00.123456+00:00"


def test_xid_without_process_and_old_address_format() -> None:
    (event,) = parse(XID_OLD_FORMAT)["xids"]
    assert (event["xid"], event["pci"]) == (62, "0000:01:00")
    assert "pid" not in event


def test_sxid_counts_the_event_not_its_detail_lines() -> None:
    facts = parse(SXID_NONFATAL, SXID_DETAIL, SXID_DATA)
    assert facts["sxids"] == [
        {
            "sxid": 12028,
            "device": "0000:05:00.0",
            "switch": "nvidia-nvswitch0",
            "fatal": False,
            "text": SXID_NONFATAL.split("kernel: ", 1)[1],
            "time": "2026-11-28T06:00:00+00:00",
        }
    ]


def test_mlx5_bandwidth_limited_only() -> None:
    facts = parse(MLX5_FULL, MLX5_LIMITED, MLX5_POWER)
    (event,) = facts["pcie_bandwidth_limited"]
    assert event["device"] == "0000:1a:00.0"
    assert "limited by 8.0 GT/s PCIe x8 link" in event["text"]


def test_window_drops_older_lines() -> None:
    old = XID_79.replace("2026-11-28T03:41:07", "2026-11-27T03:41:07")
    assert parse(old)["xids"] == []
    assert len(parse(old, window_h=30)["xids"]) == 1
    # Same instant written with a non-UTC offset: 2026-11-28T04:41:07+01:00 is 03:41:07 UTC.
    shifted = XID_79.replace("2026-11-28T03:41:07+0000", "2026-11-28T04:41:07+01:00")
    assert parse(shifted, window_h=5.3)["xids"] == []  # 5 h 19 min before NOW
    assert len(parse(shifted, window_h=5.35)["xids"]) == 1


def test_newest_line_is_now_for_a_recording() -> None:
    later = "2026-11-29T04:00:00+0000 gpu001 kernel: docker0: port 1(veth1) entered disabled state"
    assert parse(XID_79, later, now=None)["xids"] == []  # 24 h 19 min before the newest line
    assert len(parse(XID_79, later, now=None, window_h=25)["xids"]) == 1


def test_lines_without_timestamp_are_skipped() -> None:
    assert parse("NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus.")["xids"] == []


def test_storm_is_capped_per_key_and_counted() -> None:
    storm = [XID_79.replace("03:41:07", f"03:{minute:02d}:00") for minute in range(60)] + [XID_48]
    facts = parse(*storm)
    assert len(facts["xids"]) == kernel_log.MAX_EVENTS_PER_KEY + 1
    # The newest events are kept (the older ones only counted), still in log order.
    kept = [e["time"] for e in facts["xids"] if e["xid"] == 79]
    first_kept = 60 - kernel_log.MAX_EVENTS_PER_KEY
    assert kept == [f"2026-11-28T03:{minute:02d}:00+00:00" for minute in range(first_kept, 60)]
    assert facts["xids"][-1]["xid"] == 48
    assert facts["omitted"] == [
        {
            "kind": "xids",
            "xid": 79,
            "pci": "0000:18:00",
            "count": 60 - kernel_log.MAX_EVENTS_PER_KEY,
        }
    ]


def gpu_facts(log: dict) -> dict:
    return {
        "uptime_s": 30 * 86400,  # booted long before the window: "in the last 24 h"
        "gpu_source": "procfs",
        "gpus": [{"index": 0, "pci_bus_id": "00000000:18:00.0", "serial": "1654223027418"}],
        "kernel_log": log,
    }


def xid_results(log: dict, **expect: object) -> list[tuple[str, str]]:
    results = evaluate_node_health(gpu_facts(log), {**HEALTH_DEFAULTS, **expect})
    return [(r.status, r.message) for r in results if r.id == "kernel.xid"]


def test_storm_count_includes_omitted_events() -> None:
    storm = [XID_79.replace("03:41:07", f"03:{minute:02d}:00") for minute in range(60)]
    ((status, message),) = xid_results(parse(*storm))
    assert status == "fail"
    assert message == (
        "GPU 0 (00000000:18:00.0, SN 1654223027418): XID 79 x60 in the last 24 h: "
        "GPU has fallen off the bus; NVIDIA's Xid catalog: RESTART_BM"
    )


def test_ignore_list_drops_xids() -> None:
    log = parse(XID_79, XID_48)
    assert [status for status, _ in xid_results(log)] == ["fail", "fail"]
    ((status, message),) = xid_results(log, ignore_xids=[79])
    assert status == "fail" and "XID 48" in message and "PCI 0000:9a:00" in message
    assert xid_results(log, ignore_xids=[48, 79]) == [("pass", "no hardware XIDs in the last 24 h")]


def test_interleaved_storms_keep_log_order() -> None:
    lines = []
    for minute in range(30):
        stamp = f"2026-11-28T04:{minute:02d}:00"
        lines.append(XID_79.replace("2026-11-28T03:41:07", stamp))
        lines.append(XID_48.replace("2026-11-28T04:00:00", stamp))
    facts = parse(*lines)
    times = [e["time"][:19] for e in facts["xids"]]
    assert times == sorted(times)
    assert times[0] == "2026-11-28T04:10:00"
    assert {(o["xid"], o["count"]) for o in facts["omitted"]} == {(79, 10), (48, 10)}


def test_latest_event_is_the_newest_after_the_cap() -> None:
    storm = [
        XID_79.replace("03:41:07", f"03:{minute:02d}:00").replace("pid=1234", f"pid={minute}")
        for minute in range(60)
    ]
    results = evaluate_node_health(gpu_facts(parse(*storm)), HEALTH_DEFAULTS)
    (xid,) = [r for r in results if r.id == "kernel.xid"]
    assert "pid=59," in xid.observed["last"]


def test_window_wording_on_a_node_booted_within_the_window() -> None:
    facts = {**gpu_facts(parse(XID_79)), "uptime_s": 2 * 3600}
    results = evaluate_node_health(facts, HEALTH_DEFAULTS)
    (xid,) = [r for r in results if r.id == "kernel.xid"]
    assert xid.message == (
        "GPU 0 (00000000:18:00.0, SN 1654223027418): XID 79 since boot, at most 24 h: "
        "GPU has fallen off the bus; NVIDIA's Xid catalog: RESTART_BM"
    )


def test_application_xids_are_not_failures() -> None:
    xid_13 = (
        "2026-11-28T03:41:07+0000 gpu001 kernel: NVRM: Xid (PCI:0000:18:00): 13, pid=1234, "
        "name=python, Graphics Exception: ESR 0x504648=0x102000e"
    )
    assert xid_results(parse(xid_13)) == [
        ("pass", "no hardware XIDs in the last 24 h (application XIDs not judged: 13)")
    ]


def test_unknown_xid_warns() -> None:
    ((status, message),) = xid_results(parse(XID_79.replace(": 79,", ": 199,")))
    assert status == "warn"
    assert "XID 199 in the last 24 h: not in dcctl's XID table" in message


# --- the reader: real subprocesses, fake journalctl/dmesg/systemctl on PATH ----------------


def fake_tools(directory: Path, **scripts: str) -> str:
    """A PATH finding the given shell scripts (name -> body) first, then the system's tools."""
    directory.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = directory / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return f"{directory}{os.pathsep}{os.environ.get('PATH', os.defpath)}"


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv(sysroot.SYSROOT_ENV, raising=False)
    return monkeypatch


def recent(line: str) -> str:
    """The line re-dated one hour ago, so a live reader's window keeps it."""
    stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+0000")
    return stamp + line[line.index(" ") :]


def test_reader_prefers_the_journal(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "journal.txt"
    out.write_text(recent(XID_79) + "\n")
    path = fake_tools(
        tmp_path / "bin",
        journalctl=f'echo "$@" > {tmp_path}/args; cat {out}',
        dmesg="exit 1",
    )
    live.setenv("PATH", path)
    facts = kernel_log.collect_kernel_log(6)
    assert facts["source"] == "journal"
    assert [e["xid"] for e in facts["xids"]] == [79]
    args = (tmp_path / "args").read_text().split()
    assert args == ["-k", "--since=-21600s", "-o", "short-iso", "--no-pager", "-q"]


def test_reader_falls_back_to_dmesg(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "ring.txt"
    out.write_text(recent(XID_48) + "\n")
    path = fake_tools(
        tmp_path / "bin",
        journalctl="echo 'Failed to open journal' >&2; exit 1",
        dmesg=f"cat {out}",
    )
    live.setenv("PATH", path)
    facts = kernel_log.collect_kernel_log(24)
    assert facts["source"] == "dmesg"
    assert [e["xid"] for e in facts["xids"]] == [48]


def test_reader_falls_back_to_plain_dmesg(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # busybox dmesg knows no --time-format: its lines carry seconds since boot, placed with
    # the uptime (the live /proc/uptime: a line at 1 s is older than a 1-hour window on any
    # host up for more than an hour, so the test checks the event, not the window).
    out = tmp_path / "ring.txt"
    out.write_text(
        "[    1.000000] NVRM: GPU 0000:98:00.0: RmInitAdapter failed! (0x62:0x65:1792)\n"
    )
    path = fake_tools(
        tmp_path / "bin",
        journalctl="exit 1",
        dmesg=f'[ "$1" = --time-format ] && {{ echo "dmesg: unrecognized option" >&2; exit 1; }}; '
        f"cat {out}",
    )
    live.setenv("PATH", path)
    facts = kernel_log.collect_kernel_log(10**6)
    assert facts["source"] == "dmesg"
    (event,) = facts["nvrm_faults"]
    assert (event["fault"], event["pci"], event["since_boot_s"]) == (
        "init_failed",
        "0000:98:00.0",
        1.0,
    )


def test_reader_says_why_when_nothing_is_readable(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An empty journal (-q hides "insufficient permissions") and a restricted ring buffer.
    path = fake_tools(
        tmp_path / "bin",
        journalctl="exit 0",
        dmesg="echo 'dmesg: read kernel buffer failed: Operation not permitted' >&2; exit 1",
    )
    live.setenv("PATH", path)
    assert kernel_log.collect_kernel_log(24) == {
        "source": "none",
        "window_h": 24,
        "error": "journalctl: no kernel messages; "
        "dmesg: read kernel buffer failed: Operation not permitted",
    }


def test_reader_without_tools(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    live.setenv("PATH", str(tmp_path / "empty"))
    facts = kernel_log.collect_kernel_log(24)
    assert facts["source"] == "none"
    assert facts["error"] == "journalctl: not installed; dmesg: not installed"


def test_reader_times_out(live: pytest.MonkeyPatch, tmp_path: Path) -> None:
    live.setattr(kernel_log, "COMMAND_TIMEOUT_S", 0.2)
    path = fake_tools(tmp_path / "bin", journalctl="exec sleep 5", dmesg="exec sleep 5")
    live.setenv("PATH", path)
    facts = kernel_log.collect_kernel_log(24)
    assert facts["error"] == "journalctl: no answer within 0.2 s; dmesg: no answer within 0.2 s"


def test_recorded_log_under_sysroot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "dcctl-recorded").mkdir()
    (tmp_path / "dcctl-recorded" / "kmsg.txt").write_text(f"{XID_79}\n{MLX5_LIMITED}\n")
    monkeypatch.setenv(sysroot.SYSROOT_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", os.devnull)  # a recording never runs the live tools
    facts = kernel_log.collect_kernel_log(24)
    assert facts["source"] == "recorded"
    assert [e["xid"] for e in facts["xids"]] == [79]
    assert [e["device"] for e in facts["pcie_bandwidth_limited"]] == ["0000:1a:00.0"]
    (tmp_path / "dcctl-recorded" / "kmsg.txt").unlink()
    assert kernel_log.collect_kernel_log(24) == {
        "source": "none",
        "window_h": 24,
        "error": "no recorded kernel log (/dcctl-recorded/kmsg.txt)",
    }


# --- what the node counts but does not list ----------------------------------------------


def sxid_line(minute: int, severity: str, device: str = "0000:05:00.0", sxid: int = 12028) -> str:
    return (
        f"2026-11-28T06:{minute:02d}:00+0000 gpu001 kernel: nvidia-nvswitch0: SXid "
        f"(PCI:{device}): {sxid}, {severity}, Link 44 error"
    )


def test_old_fatal_sxids_of_a_key_still_fail_after_newer_non_fatal_ones() -> None:
    # Before: the fatal events fell out of the per-key cap into `omitted`, which did not say
    # they were fatal, and the key was judged on its kept (non-fatal) events: a warning.
    fatal = [sxid_line(minute, "Fatal") for minute in range(5)]
    later = [sxid_line(10 + minute, "Non-fatal") for minute in range(kernel_log.MAX_EVENTS_PER_KEY)]
    log = parse(*fatal, *later)
    assert not any(event["fatal"] for event in log["sxids"])
    assert log["omitted"] == [
        {"kind": "sxids", "sxid": 12028, "device": "0000:05:00.0", "count": 5, "fatal": True}
    ]
    facts = {**gpu_facts(log), "nvswitch_count": 4}
    results = evaluate_node_health(facts, HEALTH_DEFAULTS)
    (sxid,) = [r for r in results if r.id == "kernel.sxid"]
    assert sxid.status == "fail"
    assert "(fatal)" in sxid.message and sxid.observed["fatal"] is True


def test_non_fatal_omitted_sxids_stay_a_warning() -> None:
    # 20001 (TX Replay Error): non-fatal, and the Fabric Manager guide leaves it a warning.
    lines = [
        sxid_line(minute, "Non-fatal", sxid=20001)
        for minute in range(kernel_log.MAX_EVENTS_PER_KEY + 3)
    ]
    log = parse(*lines)
    assert log["omitted"][0]["fatal"] is False
    results = evaluate_node_health({**gpu_facts(log), "nvswitch_count": 4}, HEALTH_DEFAULTS)
    assert [r.status for r in results if r.id == "kernel.sxid"] == ["warn"]


def test_keys_past_the_cap_are_tracked_in_bounded_memory() -> None:
    # Before: every distinct key past MAX_KEYS_PER_KIND stayed in a set for the whole parse.
    left_out = kernel_log._LeftOut()
    distinct = 3 * kernel_log.MAX_LEFT_OUT_TRACKED
    for n in range(distinct):
        key = {"xid": 79, "pci": f"{n // 256:04x}:{n % 256:02x}:00"}
        left_out.add("xids", ("xids", *key.values()), key, {})
    assert len(left_out._idents) <= kernel_log.MAX_LEFT_OUT_TRACKED
    # Past the tracked keys every event counts as a new key: never fewer than there were.
    assert left_out.groups() == [{"kind": "xids", "xid": 79, "keys": distinct, "count": distinct}]


def test_a_repeated_key_past_the_tracked_ones_is_counted_at_most_once_per_event() -> None:
    left_out = kernel_log._LeftOut()
    for n in range(kernel_log.MAX_LEFT_OUT_TRACKED):
        left_out.add("xids", ("xids", 79, str(n)), {"xid": 79, "pci": str(n)}, {})
    for _ in range(5):
        left_out.add("xids", ("xids", 48, "x"), {"xid": 48, "pci": "x"}, {})
    (_, late) = left_out.groups()
    assert late == {"kind": "xids", "xid": 48, "keys": 5, "count": 5}
    # An already tracked key is still told apart from a new one.
    left_out.add("xids", ("xids", 79, "0"), {"xid": 79, "pci": "0"}, {})
    assert left_out.groups()[0]["keys"] == kernel_log.MAX_LEFT_OUT_TRACKED
