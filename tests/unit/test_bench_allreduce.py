"""Allreduce benchmark arithmetic, parameters, documents and verdicts, without torch.

The formulas are checked against rows nccl-tests printed on real machines
(tests/fixtures/real/nccl-tests/, each file naming its source and rank count).
"""

from __future__ import annotations

import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from dcctl.evaluate.bench_allreduce import (
    default_min_busbw,
    evaluate_allreduce,
    size_text,
)
from dcctl.node.bench.allreduce import (
    BFLOAT16_MAX_RANKS,
    DEFAULT_MAX_BYTES,
    PATTERN_MAX,
    PATTERN_PERIOD,
    WORKER_MODULE,
    BadParams,
    NcclTestsRow,
    alg_bandwidth,
    allreduce_worker_argv,
    bus_bandwidth,
    expected_period,
    parse_nccl_tests_line,
    pattern_period,
    summarize_allreduce,
    sweep_sizes,
    worker_params,
)

REAL = Path(__file__).parents[1] / "fixtures" / "real" / "nccl-tests"
FIXTURES = sorted(REAL.glob("*.txt"))
GIB = 1024**3


# --- formulas ------------------------------------------------------------------------------


def test_algbw_is_bytes_over_time_in_decimal_gigabytes() -> None:
    assert alg_bandwidth(2 * 10**9, 1.0) == 2.0
    assert alg_bandwidth(8 * GIB, 0.047535) == pytest.approx(180.71, abs=0.005)


def test_busbw_is_algbw_times_two_n_minus_one_over_n() -> None:
    assert bus_bandwidth(100.0, 2) == 100.0
    assert bus_bandwidth(100.0, 8) == 175.0
    assert bus_bandwidth(100.0, 16) == 187.5
    assert bus_bandwidth(100.0, 1) == 0.0


@pytest.mark.parametrize("call", [lambda: alg_bandwidth(1, 0.0), lambda: bus_bandwidth(1.0, 0)])
def test_impossible_inputs_are_refused(call: Any) -> None:
    with pytest.raises(ValueError):
        call()


def test_default_sweep_is_1_kib_to_8_gib_by_two() -> None:
    sizes = sweep_sizes(1024, DEFAULT_MAX_BYTES, 2)
    assert (sizes[0], sizes[-1], len(sizes)) == (1024, 8 * GIB, 24)
    assert all(b == 2 * a for a, b in pairwise(sizes))


def test_sweep_stops_at_the_last_size_not_above_max() -> None:
    assert sweep_sizes(1024, 5000, 4) == [1024, 4096]
    assert sweep_sizes(4096, 4096, 2) == [4096]


@pytest.mark.parametrize(
    ("low", "high", "factor"), [(0, 10, 2), (1024, 512, 2), (1024, 4096, 1), (1024.0, 4096, 2)]
)
def test_bad_sweeps_are_refused(low: Any, high: Any, factor: Any) -> None:
    with pytest.raises(BadParams):
        sweep_sizes(low, high, factor)


# --- the data pattern ----------------------------------------------------------------------


@pytest.mark.parametrize("ranks", [1, 2, 8, BFLOAT16_MAX_RANKS])
def test_the_expected_sum_is_exact_in_bfloat16(ranks: int) -> None:
    periods = [pattern_period(rank) for rank in range(ranks)]
    assert all(abs(v) <= PATTERN_MAX for period in periods for v in period)
    # Any order of additions stays within 8 * ranks <= 256, where bfloat16 holds integers.
    assert PATTERN_MAX * ranks <= 256
    assert expected_period(ranks) == [sum(column) for column in zip(*periods, strict=True)]


def test_the_pattern_depends_on_rank_and_index() -> None:
    assert pattern_period(0) != pattern_period(1)
    assert len(set(pattern_period(0))) == PATTERN_PERIOD
    # An odd period: a result shifted by a power-of-two number of elements never lines up.
    assert all((2**k) % PATTERN_PERIOD for k in range(40))


# --- parameters and argv -------------------------------------------------------------------


def test_params_get_their_defaults() -> None:
    params = worker_params({"out_dir": "/tmp/x"})
    assert params == {
        "out_dir": "/tmp/x",
        "device": "cuda",
        "dtype": "float32",
        "min_bytes": 1024,
        "max_bytes": 8 * GIB,
        "factor": 2,
        "warmup": 5,
        "iterations": 20,
        "min_time_s": 0.1,
        "init_timeout_s": 300.0,
        "fault": None,
    }


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ([], "JSON object"),
        ({}, "out_dir"),
        ({"out_dir": "/d", "iteration": 5}, "unknown params: iteration"),
        ({"out_dir": "/d", "device": "tpu"}, "device"),
        ({"out_dir": "/d", "dtype": "float16"}, "dtype"),
        ({"out_dir": "/d", "iterations": 0}, "iterations"),
        ({"out_dir": "/d", "warmup": True}, "warmup"),
        ({"out_dir": "/d", "min_time_s": -1}, "min_time_s"),
        ({"out_dir": "/d", "init_timeout_s": 0}, "init_timeout_s"),
        ({"out_dir": "/d", "min_bytes": 1026}, "multiple of 4-byte"),
        ({"out_dir": "/d", "max_bytes": 512}, "below min_bytes"),
    ],
)
def test_bad_params_are_named(raw: Any, named: str) -> None:
    with pytest.raises(BadParams, match=re.escape(named)):
        worker_params(raw)


def test_worker_argv_is_torchrun_module_form() -> None:
    params = {"out_dir": "/r", "device": "cpu", "max_bytes": 1 << 20}
    argv = allreduce_worker_argv("/usr/bin/python3", 8, params)
    assert argv[:8] == [
        "/usr/bin/python3",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "8",
        "-m",
        WORKER_MODULE,
    ]
    assert json.loads(argv[8]) == params
    with pytest.raises(BadParams):
        allreduce_worker_argv("python3", 0, params)


# --- formulas against real nccl-tests output -----------------------------------------------


def _fixture(path: Path) -> tuple[int, list[NcclTestsRow]]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# Source: https://github.com/"), path.name
    match = re.match(r"# Ranks: (\d+) ", lines[1])
    assert match, f"{path.name}: second line must state the rank count"
    rows = [row for row in map(parse_nccl_tests_line, lines) if row is not None]
    assert rows, path.name
    # Every line is a comment or a row: nothing that looks like data was skipped.
    assert len(rows) == sum(1 for line in lines if not line.startswith("#"))
    return int(match.group(1)), rows


def _printed_range(nbytes: int, time_us: float, decimals: int, ranks: int) -> tuple[float, ...]:
    """algbw and busbw bounds for any time that prints as `time_us`, widened by the 0.005 of
    printing them with two decimals."""
    half = 0.5 * 10**-decimals
    fastest, slowest = (time_us - half) * 1e-6, (time_us + half) * 1e-6
    alg_low, alg_high = alg_bandwidth(nbytes, slowest), alg_bandwidth(nbytes, fastest)
    bus_low, bus_high = bus_bandwidth(alg_low, ranks), bus_bandwidth(alg_high, ranks)
    slack = 0.005 + 1e-9
    return alg_low - slack, alg_high + slack, bus_low - slack, bus_high + slack


def _agrees(row: NcclTestsRow, ranks: int, half: str) -> bool:
    fields: dict[str, Any] = dict(row)
    time_us, decimals = float(fields[f"{half}_time_us"]), int(fields[f"{half}_time_decimals"])
    alg, bus = float(fields[f"{half}_algbw_gbs"]), float(fields[f"{half}_busbw_gbs"])
    alg_low, alg_high, bus_low, bus_high = _printed_range(row["bytes"], time_us, decimals, ranks)
    return alg_low <= alg <= alg_high and bus_low <= bus <= bus_high


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_our_formulas_give_the_figures_nccl_tests_printed(path: Path) -> None:
    ranks, rows = _fixture(path)
    for row in rows:
        assert row["type"] == "float" and row["bytes"] == 4 * row["count"]
        assert row["oop_wrong"] == 0 and row["ip_wrong"] == 0
        for half in ("oop", "ip"):
            assert _agrees(row, ranks, half), (path.name, row["bytes"], half)


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_the_check_would_catch_a_wrong_rank_count(path: Path) -> None:
    ranks, rows = _fixture(path)
    largest = max(rows, key=lambda row: row["bytes"])
    assert not _agrees(largest, ranks + 1, "oop")
    assert not _agrees(largest, 2 * ranks, "oop")


def test_fixtures_cover_several_sources_and_rank_counts() -> None:
    sources = {path.read_text().splitlines()[0] for path in FIXTURES}
    ranks = {_fixture(path)[0] for path in FIXTURES}
    assert len(sources) >= 4
    assert {2, 8, 16} <= ranks


def test_parser_reads_the_newer_wider_layout_and_ignores_other_lines() -> None:
    row = parse_nccl_tests_line(
        "        8192          2048     float     sum      -1    35.15    0.23    0.23"
        "       0    30.33    0.27    0.27       0"
    )
    assert row is not None
    assert (row["bytes"], row["oop_time_us"], row["oop_time_decimals"]) == (8192, 35.15, 2)
    assert (row["ip_algbw_gbs"], row["ip_wrong"]) == (0.27, 0)
    assert parse_nccl_tests_line("# Avg bus bandwidth    : 70.742 ") is None
    assert parse_nccl_tests_line("#       size         count      type   redop    root") is None
    assert parse_nccl_tests_line("") is None


# --- the payload section -------------------------------------------------------------------


def _row(nbytes: int, seconds: float, ranks: int = 2, wrong: int = 0) -> dict[str, Any]:
    algbw = alg_bandwidth(nbytes, seconds)
    return {
        "bytes": nbytes,
        "count": nbytes // 4,
        "iterations": 20,
        "time_us": seconds * 1e6,
        "algbw_gbs": algbw,
        "busbw_gbs": bus_bandwidth(algbw, ranks),
        "wrong": wrong,
    }


def _rank_zero(rows: list[dict[str, Any]], world: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "rank": 0,
        "world_size": world,
        "backend": "nccl",
        "device": "cuda",
        "dtype": "float32",
        "in_place": True,
        "max_bytes": rows[-1]["bytes"],
        "sizes": rows,
        "versions": {"torch": "2.13.0", "nccl": "2.21.5"},
        "wrong_total": sum(row["wrong"] for row in rows),
        "wrong_local": 0,
        **extra,
    }


def test_summary_reports_the_largest_size() -> None:
    rows = [_row(1024, 20e-6), _row(8 * GIB, 0.0475)]
    section = summarize_allreduce([_rank_zero(rows), {"rank": 1, "wrong_total": 0}])
    assert section["bytes"] == 8 * GIB
    assert section["busbw_gbs"] == rows[1]["busbw_gbs"]
    assert section["algbw_gbs"] == rows[1]["algbw_gbs"]
    assert (section["ranks"], section["backend"], section["wrong_total"]) == (2, "nccl", 0)
    assert section["errors"] == [] and section["sizes"] == rows


def test_summary_counts_wrong_elements_and_names_sizes_and_ranks() -> None:
    rows = [_row(1024, 20e-6, wrong=2), _row(2048, 21e-6), _row(4096, 22e-6, wrong=5)]
    docs = [_rank_zero(rows), {"rank": 1, "wrong_total": 7, "wrong_local": 7}]
    section = summarize_allreduce(docs)
    assert section["wrong_total"] == 7
    assert section["wrong_sizes"] == [1024, 4096]
    assert section["wrong_ranks"] == [1]


def test_summary_names_failed_and_silent_ranks() -> None:
    docs = [{"rank": 2, "error": "DistBackendError: NCCL error: unhandled system error"}]
    section = summarize_allreduce(docs, expected_ranks=4)
    assert section["errors"] == [
        {"rank": 0, "error": "wrote no result (killed, or never started)"},
        {"rank": 1, "error": "wrote no result (killed, or never started)"},
        {"rank": 2, "error": "DistBackendError: NCCL error: unhandled system error"},
        {"rank": 3, "error": "wrote no result (killed, or never started)"},
    ]
    assert section["sizes"] == [] and section["busbw_gbs"] is None


def test_summary_lists_errors_in_rank_order() -> None:
    docs = [{"rank": r, "error": "E: x"} for r in (10, 2, 1)] + [{"rank": None, "error": "?"}]
    section = summarize_allreduce(docs)
    assert [entry["rank"] for entry in section["errors"]] == [1, 2, 10, None]


def test_summary_takes_the_rank_count_from_rank_zero() -> None:
    section = summarize_allreduce([_rank_zero([_row(1024, 1e-5)], world=3)])
    assert [entry["rank"] for entry in section["errors"]] == [1, 2]


# --- the verdict ---------------------------------------------------------------------------


def _section(rows: list[dict[str, Any]], ranks: int = 8) -> Any:
    rank_docs = [_rank_zero(rows, world=ranks)]
    rank_docs += [{"rank": r, "wrong_total": 0} for r in range(1, ranks)]
    return summarize_allreduce(rank_docs)


def test_pass_above_threshold_carries_the_figures() -> None:
    rows = [_row(1024, 25e-6, 8), _row(8 * GIB, 0.0318, 8)]  # busbw ~472 GB/s
    (result,) = evaluate_allreduce(_section(rows), 400.0)
    assert (result.id, result.kind, result.status) == ("bench.allreduce", "bench", "pass")
    assert result.observed == {
        "busbw_gbs": rows[1]["busbw_gbs"],
        "algbw_gbs": rows[1]["algbw_gbs"],
        "bytes": 8 * GIB,
        "ranks": 8,
        "backend": "nccl",
    }
    assert result.expected == {"wrong": 0, "min_busbw_gbs": 400.0}
    assert "at 8 GiB over 8 ranks" in result.message


def test_below_threshold_fails_and_hints_at_nvls() -> None:
    rows = [_row(8 * GIB, 0.0412, 8)]  # busbw ~365 GB/s
    (result,) = evaluate_allreduce(_section(rows), 400.0)
    assert result.status == "fail"
    assert "below 400 GB/s" in result.message and "NVLink SHARP off" in result.message


def test_no_threshold_reports_without_judging() -> None:
    (result,) = evaluate_allreduce(_section([_row(1 << 20, 0.01, 2)], ranks=2), None)
    assert result.status == "pass"
    assert "figure with no judgement" in result.message
    assert result.expected == {"wrong": 0}


def test_any_wrong_element_fails_whatever_the_speed() -> None:
    rows = [_row(1024, 2e-5, 8, wrong=8), _row(8 * GIB, 0.03, 8, wrong=1)]
    (result,) = evaluate_allreduce(_section(rows), None)
    assert result.status == "fail"
    assert result.message.startswith("allreduce returned 9 wrong elements at 1 KiB, 8 GiB")


def test_rank_errors_are_errors_naming_the_rank() -> None:
    section = summarize_allreduce(
        [{"rank": 1, "error": "RuntimeError: CUDA error: out of memory"}], expected_ranks=2
    )
    (result,) = evaluate_allreduce(section, 400.0)
    assert result.status == "error"
    assert "rank 1: RuntimeError: CUDA error: out of memory" in result.message
    assert "rank 0: wrote no result" in result.message


@pytest.mark.parametrize("section", [None, "garbage", 3])
def test_a_missing_section_is_an_error(section: Any) -> None:
    (result,) = evaluate_allreduce(section, None)
    assert result.status == "error" and result.kind == "bench"


@pytest.mark.parametrize(
    ("name", "count", "nvswitch", "floor"),
    [
        ("NVIDIA H100 80GB HBM3", 8, True, 400.0),
        ("NVIDIA H200", 8, True, 400.0),
        ("NVIDIA A100-SXM4-80GB", 8, True, 200.0),
        ("Tesla V100-SXM2-16GB", 8, False, 100.0),
        ("NVIDIA H100 80GB HBM3", 4, True, None),
        ("NVIDIA H100 PCIe", 8, False, None),
        ("NVIDIA GH200 480GB", 8, True, None),
        ("Tesla V100-PCIE-32GB", 8, False, None),
        ("NVIDIA GeForce RTX 4090", 8, False, None),
    ],
)
def test_default_threshold_table(name: str, count: int, nvswitch: bool, floor: Any) -> None:
    assert default_min_busbw(name, count, nvswitch) == floor


@pytest.mark.parametrize(
    ("nbytes", "text"), [(1024, "1 KiB"), (8 * GIB, "8 GiB"), (1536, "1536 B"), ("x", "x")]
)
def test_size_text(nbytes: Any, text: str) -> None:
    assert size_text(nbytes) == text
