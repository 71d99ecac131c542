"""A node's output, however large or odd, costs the controller a bounded amount of work, and
cutting it never makes a verdict milder: payload framing, the node's kernel-log caps, and the
caps and folds of the evaluators."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import pytest

from dcctl.evaluate import bounds
from dcctl.evaluate.dcgm import MAX_DCGM_TESTS
from dcctl.evaluate.node import evaluate_node
from dcctl.evaluate.result import Result
from dcctl.node.payload import (
    MAX_PAYLOAD_DEPTH,
    PAYLOAD_END,
    PAYLOAD_START,
    BadPayload,
    PayloadCutOff,
    format_payload,
    read_payload,
)
from dcctl.node.probes import kernel_log
from dcctl.node.probes.kernel_log import parse_kernel_log

try:  # sre's parser, which knows how wide a pattern's match can be
    from re import _parser as sre_parser
except ImportError:  # Python 3.10
    import sre_parse as sre_parser  # type: ignore[no-redef]

NOW = datetime(2026, 11, 28, 9, 0, 0, tzinfo=timezone.utc)
STAMP = "2026-11-28T03:41:07+0000 gpu001 kernel: "


def gpu(index: int) -> dict[str, Any]:
    return {"index": index, "pci_bus_id": f"00000000:{0x18 + index:02x}:00.0", "name": "H100"}


def node(log: dict[str, Any], **facts: Any) -> dict[str, Any]:
    """An 8-GPU node (procfs readings: no GPU health checks) with this kernel log."""
    base = {"uptime_s": 30 * 86400, "gpu_source": "procfs", "gpus": [gpu(i) for i in range(8)]}
    return {**base, "kernel_log": log, **facts}


def log_of(xids: Sequence[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    empty = {"source": "journal", "window_h": 24, "sxids": [], "pcie_bandwidth_limited": []}
    return {**empty, "xids": xids, **fields}


def xid_event(xid: int, pci: str) -> dict[str, Any]:
    text = f"NVRM: Xid (PCI:{pci}): {xid}, pid=1, name=python, something"
    return {"xid": xid, "pci": pci, "text": text, "time": "2026-11-28T03:41:07+00:00"}


def distinct_pci(n: int) -> str:
    """A different PCI address per n: one more distinct XID key each."""
    return f"{n // 256:04x}:{n % 256:02x}:00"


def of(results: list[Result], result_id: str) -> list[Result]:
    return [r for r in results if r.id == result_id]


# --- framing ---------------------------------------------------------------------------------


def test_deeply_nested_json_is_a_bad_payload_not_a_recursion_error() -> None:
    text = f"{PAYLOAD_START}{'[' * 200_000}{']' * 200_000}{PAYLOAD_END}"
    with pytest.raises(BadPayload, match=f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"):
        read_payload(text)


def test_nesting_is_allowed_up_to_the_limit() -> None:
    def nested(depth: int) -> str:  # `depth` containers, the outer one an object
        inner = "[" * (depth - 1) + "]" * (depth - 1)
        return f'{PAYLOAD_START}{{"a":{inner}}}{PAYLOAD_END}'

    assert read_payload(nested(MAX_PAYLOAD_DEPTH)) is not None
    with pytest.raises(BadPayload):
        read_payload(nested(MAX_PAYLOAD_DEPTH + 1))


def test_a_frame_whose_start_was_cut_off_is_told_apart_from_no_frame() -> None:
    kept_tail = format_payload({"x": "a" * 1000})[500:]
    with pytest.raises(PayloadCutOff):
        read_payload(kept_tail)
    assert read_payload("login banner only\n") is None


def test_invalid_json_in_a_frame_says_so() -> None:
    with pytest.raises(BadPayload, match="not valid JSON"):
        read_payload(f"{PAYLOAD_START}{{oops{PAYLOAD_END}")


# --- controller work on a huge XID list --------------------------------------------------------


class Meter:
    """Counts reads of metered dicts and stops the test once they pass a budget."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.reads = 0

    def tick(self) -> None:
        self.reads += 1
        if self.reads > self.budget:
            raise AssertionError(f"more than {self.budget} reads: work grows with the payload")


class Metered(dict[str, Any]):
    def __init__(self, data: dict[str, Any], meter: Meter) -> None:
        super().__init__(data)
        self.meter = meter

    def get(self, key: str, default: Any = None) -> Any:
        self.meter.tick()
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.meter.tick()
        return super().__getitem__(key)


def test_evaluating_100k_distinct_xids_reads_a_bounded_part_of_them() -> None:
    # Before: every XID key scanned the whole event list and the GPU list, 100,000 keys took
    # hours (8,000 took 36 s) in the controller's main thread, deaf to --timeout and Ctrl-C.
    read_at_most = bounds.MAX_EVENTS_READ
    meter = Meter(budget=20 * read_at_most)
    events = [Metered(xid_event(79, distinct_pci(n)), meter) for n in range(100_000)]
    facts = node(log_of(events))
    facts["gpus"] = [Metered(g, meter) for g in facts["gpus"]]
    results = evaluate_node(facts, {})
    xids = of(results, "kernel.xid")
    assert len(xids) == bounds.MAX_RESULTS_PER_CHECK + 1
    more = read_at_most - bounds.MAX_RESULTS_PER_CHECK
    assert (xids[-1].status, xids[-1].message) == (
        "fail",
        f"… and {more:,} more distinct XID events ({more:,} fail)",
    )
    # What was not read is a failure of its own: the verdict cannot be milder for it.
    (size,) = of(results, "payload.size")
    assert size.status == "fail"
    assert "the node sent 100,000 entries in kernel_log.xids" in size.message
    assert len(results) < 3 * bounds.MAX_RESULTS_PER_CHECK


def xid_line(xid: int, pci: str) -> str:
    return f"{STAMP}NVRM: Xid (PCI:{pci}): {xid}, pid=1234, name=python, GPU has fallen off"


def test_a_node_with_100k_distinct_xids_sends_a_bounded_payload() -> None:
    lines = [xid_line(79 if n % 2 else 48, distinct_pci(n)) for n in range(100_000)]
    log = parse_kernel_log("\n".join(lines), NOW, 24, "journal")
    assert len(log["xids"]) == kernel_log.MAX_KEYS_PER_KIND
    left = {entry["xid"]: (entry["keys"], entry["count"]) for entry in log["left_out"]}
    rest = 50_000 - kernel_log.MAX_KEYS_PER_KIND // 2
    assert left == {79: (rest, rest), 48: (rest, rest)}
    assert len(format_payload(log)) < 100_000
    (*shown, folded) = of(evaluate_node(node(log), {}), "kernel.xid")
    assert len(shown) == bounds.MAX_RESULTS_PER_CHECK
    more = 100_000 - bounds.MAX_RESULTS_PER_CHECK
    assert (folded.status, folded.message) == (
        "fail",
        f"… and {more:,} more distinct XID events ({more:,} fail)",
    )


def test_a_hardware_xid_past_the_node_cap_still_fails_the_node() -> None:
    # Application XIDs fill the listed keys; the one hardware XID is only counted.
    lines = [xid_line(13, distinct_pci(n)) for n in range(kernel_log.MAX_KEYS_PER_KIND)]
    log = parse_kernel_log("\n".join([*lines, xid_line(79, "0000:18:00")]), NOW, 24, "journal")
    assert {e["xid"] for e in log["xids"]} == {13}
    (xid,) = of(evaluate_node(node(log), {}), "kernel.xid")
    assert (xid.status, xid.message) == ("fail", "… and 1 more distinct XID events (1 fail)")
    # Ignored on purpose, it no longer counts.
    (passed,) = of(evaluate_node(node(log), {"ignore_xids": [79]}), "kernel.xid")
    assert passed.status == "pass"


def test_sxids_past_the_node_cap_keep_a_fatal_one() -> None:
    line = STAMP + "nvidia-nvswitch0: SXid (PCI:{}.0): 12028, {}, Link 44 error"
    lines = [line.format(distinct_pci(n), "Non-fatal") for n in range(kernel_log.MAX_KEYS_PER_KIND)]
    lines.append(line.format("0009:05:00", "Fatal"))
    log = parse_kernel_log("\n".join(lines), NOW, 24, "journal")
    assert log["left_out"] == [
        {"kind": "sxids", "sxid": 12028, "keys": 1, "count": 1, "fatal": True}
    ]
    sxids = of(evaluate_node(node(log, nvswitch_count=4), {}), "kernel.sxid")
    assert sxids[-1].status == "fail"
    assert bounds.worst(r.status for r in sxids) == "fail"


def regex_width(pattern: re.Pattern[str]) -> int:
    """The most characters one match of `pattern` can span (sre's own width analysis)."""
    return int(sre_parser.parse(pattern.pattern).getwidth()[1])


def test_patterns_searched_over_a_whole_line_match_a_bounded_width() -> None:
    # A search tries the pattern at every offset of the line; one whose match spans at most W
    # characters costs at most W steps there, so a search is linear in the line however it is
    # built. The old mlx5 pattern (`mlx5_core (pci): .*available PCIe bandwidth`) was
    # unbounded: it scanned the rest of the line from every "mlx5_core", ~40 s on 1 MB.
    widths = {p.pattern: regex_width(p) for p in kernel_log.LINE_SEARCHES}
    assert all(width <= 200 for width in widths.values()), widths
    old = re.compile(rf"mlx5_core ({kernel_log._PCI}): .*available PCIe bandwidth")
    assert regex_width(old) > 10**9


def test_a_megabyte_long_kernel_line_of_repeated_prefixes_parses() -> None:
    prefix = "mlx5_core 0000:1a:00.0: "
    line = STAMP + prefix * (2**20 // len(prefix)) + "PCIe bandwidth"
    log = parse_kernel_log(line + "\n" + line + " available PCIe bandwidth, limited by x", NOW, 24)
    (event,) = log["pcie_bandwidth_limited"]
    assert event["device"] == "0000:1a:00.0"
    assert len(event["text"]) == kernel_log.MAX_TEXT_CHARS


# --- caps and folds --------------------------------------------------------------------------


def test_per_gpu_findings_past_the_cap_fold_into_one_with_the_worst_status() -> None:
    many = [Result("gpu.pcie.gen", "warn", f"GPU {i}: Gen4 of Gen5") for i in range(40)]
    many[-1] = Result("gpu.pcie.gen", "fail", "GPU 39: worse")
    folded = bounds.fold_by_id([Result("os.release", "pass", "OS"), *many])
    assert len(folded) == 1 + bounds.MAX_RESULTS_PER_CHECK + 1
    last = folded[-1]
    assert (last.id, last.status) == ("gpu.pcie.gen", "fail")
    assert last.message == "… and 8 more GPUs (1 fail, 7 warn)"


def test_a_list_longer_than_any_node_has_is_cut_and_failed() -> None:
    facts = node(log_of([]))
    facts["gpus"] = [gpu(i % 200) for i in range(1000)]
    results = evaluate_node(facts, {"gpu_count": 8})
    (size,) = of(results, "payload.size")
    assert size.message == (
        "the node sent 1,000 entries in gpus, more than dcctl reads (256): "
        "only the first 256 were judged"
    )
    assert len(facts["gpus"]) == 1000  # the facts kept in the run stay as the node sent them


def test_strings_from_the_node_are_shortened_in_messages() -> None:
    log = {"source": "none", "window_h": 24, "error": "x" * 1_000_000}
    (unreadable,) = of(evaluate_node(node(log), {}), "kernel.xid")
    assert len(unreadable.message) < 2 * bounds.MAX_SHOWN_CHARS + 200


def test_many_dcgm_tests_fold_into_one_diag_result() -> None:
    def rows() -> Iterator[dict[str, Any]]:
        for n in range(MAX_DCGM_TESTS + 10):
            yield {"name": f"test {n}", "result": "Fail" if n == 70 else "Pass", "gpu": 0}

    dcgm = {"available": True, "level": 1, "tests": list(rows()), "error": None}
    results = evaluate_node(node(log_of([]), dcgm=dcgm), {})
    diag = of(results, "dcgm.diag")
    assert [(r.status, r.message) for r in diag] == [
        ("fail", "… and 10 more DCGM results (1 fail, 9 pass)")
    ]


# --- counts and shapes from a hostile node ----------------------------------------------------

# What a node may send where a count belongs: none of them may hide what it counts.
ODD_COUNTS = [0, -3, True, False, 2.5, math.nan, math.inf, "7", None, [1], 10**40]


@pytest.mark.parametrize("keys", ODD_COUNTS)
def test_a_left_out_hardware_xid_fails_whatever_its_count(keys: Any) -> None:
    # Before: keys 0 (or 3 and -3 together) left Counter({'fail': 0}), which fold read as
    # nothing: no kernel.xid result at all, not even a pass.
    log = log_of([], left_out=[{"kind": "xids", "xid": 79, "keys": keys, "count": keys}])
    xids = of(evaluate_node(node(log), {}), "kernel.xid")
    assert [r.status for r in xids] == ["fail"]


def test_left_out_counts_that_cancel_out_still_fail() -> None:
    entries = [{"kind": "xids", "xid": 79, "keys": n, "count": n} for n in (3, -3)]
    xids = of(evaluate_node(node(log_of([], left_out=entries)), {}), "kernel.xid")
    assert [r.status for r in xids] == ["fail"]
    assert xids[0].observed["more"] >= 2


@pytest.mark.parametrize("count", ODD_COUNTS)
def test_an_omitted_hardware_xid_fails_whatever_its_count(count: Any) -> None:
    omitted = [{"kind": "xids", "xid": 79, "pci": "0000:18:00", "count": count}]
    xids = of(evaluate_node(node(log_of([], omitted=omitted)), {}), "kernel.xid")
    assert [r.status for r in xids] == ["fail"]


@pytest.mark.parametrize("keys", [0, -1, "x"])
def test_left_out_sxids_and_nics_are_judged_whatever_their_count(keys: Any) -> None:
    left_out = [
        {"kind": "sxids", "sxid": 12028, "keys": keys, "count": keys, "fatal": True},
        {"kind": "pcie_bandwidth_limited", "keys": keys, "count": keys},
    ]
    results = evaluate_node(node(log_of([], left_out=left_out)), {})
    assert [r.status for r in of(results, "kernel.sxid")] == ["fail"]
    assert [r.status for r in of(results, "kernel.mlx5_pcie")] == ["warn"]


def test_a_fold_of_zero_counts_is_no_result_and_of_odd_ones_the_worst() -> None:
    assert bounds.fold("kernel.xid", [], Counter({"fail": 0})) == []
    (folded,) = bounds.fold("kernel.xid", [], Counter({"warn": 1, "fail": -1}))
    assert folded.status == "warn"


def test_a_hardware_xid_fails_a_node_whose_gpus_are_gone() -> None:
    # The driver no longer loads (no GPU, no NVIDIA facts) after the GPU fell off the bus: the
    # XID it logged before is the finding that explains it.
    facts = node(log_of([xid_event(79, "0000:18:00")]), gpu_source="none", gpus=[])
    assert [r.status for r in of(evaluate_node(facts, {}), "kernel.xid")] == ["fail"]


def test_a_hardware_xid_in_a_log_marked_unreadable_still_fails() -> None:
    log = log_of([xid_event(79, "0000:18:00")], source="none", error="permission denied")
    assert "fail" in [r.status for r in of(evaluate_node(node(log), {}), "kernel.xid")]


def mount(point: str, options: list[str]) -> dict[str, Any]:
    return {"device": "/dev/md0", "mountpoint": point, "fstype": "xfs", "options": options}


def test_capped_mounts_keep_the_last_entries_which_shadow_earlier_ones() -> None:
    # Before: the first 50,000 were kept, so /raid was judged by its shadowed rw entry.
    filler = [mount(f"/var/lib/kubelet/pods/{n}", ["rw"]) for n in range(50_000)]
    mounts = [mount("/raid", ["rw"]), *filler, mount("/raid", ["ro"])]
    results = evaluate_node(node(log_of([]), mounts=mounts), {"mounts": ["/raid"]})
    (present,) = of(results, "mounts.present:/raid")
    assert present.status == "pass" and present.observed["options"] == ["ro"]
    (writable,) = of(results, "mounts.writable:/raid")
    assert writable.status == "fail"
    (size,) = of(results, "payload.size")
    assert "only the last 50,000 were judged" in size.message


@pytest.mark.parametrize(
    ("facts", "problem"),
    [
        ({"gpus": "oops"}, "gpus is str, expected list"),
        ({"gpus": [1]}, "gpus[0] is int, expected dict"),
        ({"gpus": [{**gpu(0), "pcie": {"replays": "9"}}]}, "gpus[0].pcie.replays is str"),
        ({"mounts": [{"device": "d", "fstype": "xfs"}]}, "mounts[0] has no mountpoint"),
        ({"mounts": [{**mount("/", ["rw"]), "options": "ro"}]}, "mounts[0].options is str"),
        ({"kernel_log": log_of([{"xid": "79", "pci": "0000:18:00"}])}, "kernel_log.xids[0].xid"),
        ({"ib": [{"counters": {"link_downed": [1]}}]}, "ib[0].counters.link_downed is list"),
        ({"memory": {"total_gb": "lots"}}, "memory.total_gb is str"),
        ({"modules": "nouveau"}, "modules is str, expected list"),
        ({"dcgm": {"available": True, "tests": [{"result": {}}]}}, "dcgm.tests[0].result is"),
        ({"probe_errors": ["gpu"]}, "probe_errors is list, expected dict"),
        # Numbers that pass every `reading > limit` test, cancel out in a sum, or overflow a
        # float in a message.
        ({"ib": [{"rate_gbps": math.nan}]}, "ib[0].rate_gbps is nan, expected a finite number"),
        (
            {"gpus": [{**gpu(0), "nvlink": [{"link": 0, "crc_flit": -5, "crc_data": 5}]}]},
            "gpus[0].nvlink[0].crc_flit is -5, expected a count (0 or more)",
        ),
        ({"memory": {"total_gb": 10**400}}, "memory.total_gb is 10000000000000000000…"),
        ({"nvswitch_count": True}, "nvswitch_count is bool, expected a count"),
    ],
)
def test_a_payload_of_the_wrong_shape_is_one_clear_error(
    facts: dict[str, Any], problem: str
) -> None:
    # Before: "evaluating results failed: KeyError..." (or TypeError) from the session.
    results = evaluate_node(node(log_of([]), **facts), {"mounts": ["/"], "min_memory_gb": 1})
    (shape,) = of(results, "payload.shape")
    assert shape.status == "error"
    assert shape.message.startswith(f"node payload malformed: {problem}")


def test_a_reading_that_is_not_a_number_does_not_pass() -> None:
    # Before: NaN < 400 is False, so a port at "NaN Gb/s" was not slow: ib.rate passed.
    port = {"device": "mlx5_0", "port": 1, "state": "ACTIVE", "rate_gbps": math.nan}
    results = evaluate_node(node(log_of([]), ib=[port]), {"ib_rate": 400})
    assert [r.status for r in of(results, "ib.rate")] == ["error"]


def test_a_malformed_part_leaves_the_rest_judged() -> None:
    facts = node(log_of([xid_event(79, "0000:18:00")]), mounts="oops")
    results = evaluate_node(facts, {"mounts": ["/raid"]})
    assert [r.status for r in of(results, "kernel.xid")] == ["fail"]
    (present,) = of(results, "mounts.present:/raid")
    assert (present.status, present.message) == (
        "error",
        "mounts probe failed: node payload malformed: mounts is str, expected list",
    )
