"""A node's output, however large or odd, costs the controller a bounded amount of work, and
cutting it never makes a verdict milder: payload framing, the node's kernel-log caps, and the
caps and folds of the evaluators."""

from __future__ import annotations

import time
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
    extract_payload,
    format_payload,
    read_payload,
)
from dcctl.node.probes import kernel_log
from dcctl.node.probes.kernel_log import parse_kernel_log

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
    assert extract_payload(text) is None


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


def test_a_megabyte_long_kernel_line_parses_in_linear_time() -> None:
    # "mlx5_core <pci>: " repeated, then the phrase: the old `mlx5_core (pci): .*available
    # PCIe bandwidth` regex retried the rest of the line from every repetition (~40 s here).
    prefix = "mlx5_core 0000:1a:00.0: "
    line = STAMP + prefix * (2**20 // len(prefix)) + "PCIe bandwidth"
    started = time.monotonic()
    log = parse_kernel_log(line + "\n" + line + " available PCIe bandwidth, limited by x", NOW, 24)
    assert time.monotonic() - started < 5  # linear: ~0.02 s; quadratic: ~40 s
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
