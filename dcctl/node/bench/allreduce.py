"""Node-scope allreduce benchmark: the arithmetic, the parameters and the documents.

The launcher (a node task under `python -S`, no torch) and the controller's evaluator import
this module, and the torch worker (`allreduce_worker`) reads its parameters and data pattern
from it, so it is standard library only and Python 3.8 syntax.

Figures follow nccl-tests (doc/PERFORMANCE.md, src/all_reduce.cu `AllReduceGetBw`):
algbw = S / t, busbw = algbw * 2(n-1)/n, with S the message size in bytes, t the mean time of
one operation and GB = 10^9 bytes. A size is "wrong" when any element of any rank's result
differs from the exactly known sum (nccl-tests' `#wrong`).
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

GB = 1e9
DEFAULT_MIN_BYTES = 1024
DEFAULT_MAX_BYTES = 8 * 1024**3
DEFAULT_FACTOR = 2
DEFAULT_WARMUP = 5
# Timed iterations per size: at least `iterations` (nccl-tests' default -n 20), and more where
# one operation is short, until `min_time_s` of timed work: a 1 KiB allreduce takes ~20 us on
# NVLink, so 20 of them are too few for a stable mean.
DEFAULT_ITERATIONS = 20
DEFAULT_MIN_TIME_S = 0.1
MAX_ITERATIONS = 100_000
# Also bounds every collective after the join (torch applies it to each operation), so it must
# exceed the slowest timed batch on a sick node, not only the rendezvous.
DEFAULT_INIT_TIMEOUT_S = 300.0
DTYPES = {"float32": 4, "bfloat16": 2}
DEVICES = ("cuda", "cpu")
WORKER_MODULE = "dcctl.node.bench.allreduce_worker"
# Test hook, read by the worker only: this rank adds 1 to one element of its input after the
# known pattern is written, so every rank's result holds exactly one wrong element per size.
CORRUPT_RANK_ENV = "DCCTL_TEST_CORRUPT_RANK"

# The data every rank reduces: period PATTERN_PERIOD (a prime, so a result shifted by a power of
# two elements, the usual chunk boundary, never lines up with the pattern) and values in
# [-8, 8] that depend on rank and index. Every partial sum is an integer of magnitude at most
# 8 * ranks, exact in float32 and, up to BFLOAT16_MAX_RANKS ranks, in bfloat16 (integers up to
# 256 are exact there), whatever order the reduction adds them in.
PATTERN_PERIOD = 17
PATTERN_MAX = 8
BFLOAT16_MAX_RANKS = 256 // PATTERN_MAX


class BadParams(ValueError):
    """Worker parameters the benchmark cannot run with."""


class SizeRow(TypedDict):
    """One size of the sweep, as the worker measured it (time: slowest rank's mean)."""

    bytes: int
    count: int
    iterations: int
    time_us: float
    algbw_gbs: float
    busbw_gbs: float
    wrong: int


class RankDoc(TypedDict, total=False):
    """`out_dir/rank-<r>.json`. Rank 0 carries the sweep; every rank its own wrong count;
    a rank that failed carries only `rank` and `error`."""

    rank: int
    error: str
    # Where the rank ran: its place on its node, the node's place in the job, the node's name.
    local_rank: int
    node_rank: int
    hostname: str
    world_size: int
    backend: str
    device: str
    dtype: str
    in_place: bool
    max_bytes: int
    sizes: list[SizeRow]
    versions: dict[str, str | None]
    wrong_total: int
    wrong_local: int


class AllreduceSection(TypedDict):
    """The payload section the launcher sends and `evaluate_allreduce` judges."""

    bench: str
    ranks: int | None
    backend: str | None
    device: str | None
    dtype: str | None
    in_place: bool | None
    sizes: list[SizeRow]
    bytes: int | None
    algbw_gbs: float | None
    busbw_gbs: float | None
    wrong_total: int
    wrong_sizes: list[int]
    wrong_ranks: list[int]
    errors: list[dict[str, Any]]
    versions: dict[str, str | None]


class NcclTestsRow(TypedDict):
    """One data row of nccl-tests' all_reduce_perf: both halves, and how many decimals each
    time was printed with (the printed figures are rounded from the unrounded time)."""

    bytes: int
    count: int
    type: str
    redop: str
    oop_time_us: float
    oop_time_decimals: int
    oop_algbw_gbs: float
    oop_busbw_gbs: float
    oop_wrong: int | None
    ip_time_us: float
    ip_time_decimals: int
    ip_algbw_gbs: float
    ip_busbw_gbs: float
    ip_wrong: int | None


# --- figures -------------------------------------------------------------------------------


def alg_bandwidth(nbytes: int, seconds: float) -> float:
    """GB/s moved by one operation of `nbytes` taking `seconds` (nccl-tests' algbw)."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds!r}")
    return nbytes / GB / seconds


def bus_bandwidth(algbw: float, ranks: int) -> float:
    """nccl-tests' busbw for allreduce: what each rank's link carried, comparable to its
    hardware bandwidth whatever the rank count (0 for one rank: nothing crosses a link)."""
    if ranks < 1:
        raise ValueError(f"ranks must be at least 1, got {ranks!r}")
    return algbw * (2 * (ranks - 1)) / ranks


def sweep_sizes(min_bytes: int, max_bytes: int, factor: int) -> list[int]:
    """min, min*factor, ... up to max included, as nccl-tests' -b/-e/-f walk them."""
    for name, value in (("min_bytes", min_bytes), ("max_bytes", max_bytes), ("factor", factor)):
        if type(value) is not int:
            raise BadParams(f"{name} must be an integer, got {value!r}")
    if min_bytes < 1:
        raise BadParams(f"min_bytes must be at least 1, got {min_bytes}")
    if factor < 2:
        raise BadParams(f"factor must be at least 2, got {factor}")
    if max_bytes < min_bytes:
        raise BadParams(f"max_bytes ({max_bytes}) is below min_bytes ({min_bytes})")
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= factor
    return sizes


# --- the data pattern ----------------------------------------------------------------------


def _pattern_value(rank: int, index: int) -> int:
    return (11 * index + 7 * rank) % PATTERN_PERIOD - PATTERN_MAX


def pattern_period(rank: int) -> list[int]:
    """One period of the values rank `rank` reduces; element i holds entry i % PATTERN_PERIOD."""
    return [_pattern_value(rank, i) for i in range(PATTERN_PERIOD)]


def expected_period(ranks: int) -> list[int]:
    """One period of the exact sum over `ranks` ranks."""
    return [sum(_pattern_value(r, i) for r in range(ranks)) for i in range(PATTERN_PERIOD)]


# --- parameters ----------------------------------------------------------------------------

_DEFAULTS: dict[str, Any] = {
    "device": "cuda",
    "min_bytes": DEFAULT_MIN_BYTES,
    "max_bytes": DEFAULT_MAX_BYTES,
    "factor": DEFAULT_FACTOR,
    "warmup": DEFAULT_WARMUP,
    "iterations": DEFAULT_ITERATIONS,
    "min_time_s": DEFAULT_MIN_TIME_S,
    "dtype": "float32",
    "init_timeout_s": DEFAULT_INIT_TIMEOUT_S,
    # An injected fault (dcctl.node.bench.faults): slow-link or die, for proving the pairs
    # pass and the gang's teardown find them.
    "fault": None,
}


def _count(params: dict[str, Any], name: str, least: int) -> int:
    value = params[name]
    if type(value) is not int or value < least:
        raise BadParams(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _seconds(params: dict[str, Any], name: str, positive: bool) -> float:
    value = params[name]
    # bool is an int subclass; a YAML `yes` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadParams(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise BadParams(f"{name} must be {'positive' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _choice(params: dict[str, Any], name: str, allowed: Any) -> str:
    value = params[name]
    if value not in allowed:
        raise BadParams(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return str(value)


def _fault(value: Any) -> dict[str, Any] | None:
    if value is not None and not (isinstance(value, dict) and isinstance(value.get("kind"), str)):
        raise BadParams(f"fault must be null or a parsed fault object, got {value!r}")
    return value


def worker_params(raw: Any) -> dict[str, Any]:
    """The worker's parameters with defaults filled in; BadParams names the first bad one."""
    if not isinstance(raw, dict):
        raise BadParams(f"params must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_DEFAULTS) - {"out_dir"})
    if unknown:
        raise BadParams(f"unknown params: {', '.join(unknown)}")
    if not isinstance(raw.get("out_dir"), str) or not raw["out_dir"]:
        raise BadParams(f"out_dir must be a directory path, got {raw.get('out_dir')!r}")
    params = dict(_DEFAULTS, **raw)
    checked = {
        "out_dir": params["out_dir"],
        "device": _choice(params, "device", DEVICES),
        "dtype": _choice(params, "dtype", DTYPES),
        "warmup": _count(params, "warmup", 0),
        "iterations": _count(params, "iterations", 1),
        "min_time_s": _seconds(params, "min_time_s", positive=False),
        "init_timeout_s": _seconds(params, "init_timeout_s", positive=True),
        "fault": _fault(params["fault"]),
    }
    sizes = sweep_sizes(params["min_bytes"], params["max_bytes"], params["factor"])
    element = DTYPES[checked["dtype"]]
    if sizes[0] % element:
        raise BadParams(f"min_bytes ({sizes[0]}) is not a multiple of {element}-byte elements")
    checked.update(min_bytes=sizes[0], max_bytes=params["max_bytes"], factor=params["factor"])
    return checked


def allreduce_worker_argv(python: str, nproc: int, params: dict[str, Any]) -> list[str]:
    """The command that runs the worker on `nproc` local processes under torchrun; the caller
    sets PYTHONPATH to the runtime root so `-m` finds the worker."""
    if type(nproc) is not int or nproc < 1:
        raise BadParams(f"nproc must be a positive integer, got {nproc!r}")
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(nproc),
        "-m",
        WORKER_MODULE,
        json.dumps(params, sort_keys=True, separators=(",", ":")),
    ]


# --- the documents -------------------------------------------------------------------------


def _error_entry(doc: dict[str, Any]) -> dict[str, Any]:
    return {"rank": doc.get("rank"), "error": str(doc.get("error"))}


def _rank_order(entry: dict[str, Any]) -> tuple[int, int, str]:
    rank = entry["rank"]
    return (0, rank, "") if type(rank) is int else (1, 0, str(rank))


def _missing_ranks(docs: list[dict[str, Any]], expected: int | None) -> list[dict[str, Any]]:
    if expected is None:
        return []
    seen = {doc.get("rank") for doc in docs}
    return [
        {"rank": rank, "error": "wrote no result (killed, or never started)"}
        for rank in range(expected)
        if rank not in seen
    ]


def summarize_allreduce(
    rank_docs: list[dict[str, Any]], expected_ranks: int | None = None
) -> AllreduceSection:
    """The payload section from every rank's document: rank 0's sweep table, the figures at
    its largest size, every wrong element, and each rank's error naming the rank.

    `expected_ranks` (the launcher's nproc, else rank 0's world_size) names ranks that wrote
    nothing: torchrun stops every rank once one fails.
    """
    docs = [doc for doc in rank_docs if isinstance(doc, dict)]
    zero = next((doc for doc in docs if doc.get("rank") == 0 and "error" not in doc), {})
    if expected_ranks is None and isinstance(zero.get("world_size"), int):
        expected_ranks = zero["world_size"]
    errors = [_error_entry(doc) for doc in docs if "error" in doc]
    errors += _missing_ranks(docs, expected_ranks)
    errors.sort(key=_rank_order)
    sizes: list[SizeRow] = list(zero.get("sizes") or [])
    largest = max(sizes, key=lambda row: row["bytes"]) if sizes else None
    return {
        "bench": "allreduce",
        "ranks": zero.get("world_size", expected_ranks),
        "backend": zero.get("backend"),
        "device": zero.get("device"),
        "dtype": zero.get("dtype"),
        "in_place": zero.get("in_place"),
        "sizes": sizes,
        "bytes": largest["bytes"] if largest else None,
        "algbw_gbs": largest["algbw_gbs"] if largest else None,
        "busbw_gbs": largest["busbw_gbs"] if largest else None,
        "wrong_total": sum(row["wrong"] for row in sizes),
        "wrong_sizes": [row["bytes"] for row in sizes if row["wrong"]],
        "wrong_ranks": sorted(doc["rank"] for doc in docs if doc.get("wrong_local")),
        "errors": errors,
        "versions": dict(zero.get("versions") or {}),
    }


# --- nccl-tests output, to check the formulas against figures it printed -------------------

_NUMBER = r"(\d+(?:\.(\d+))?)"
_HALF = rf"\s+{_NUMBER}\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+|N/A)"
_ROW = re.compile(rf"^\s*(\d+)\s+(\d+)\s+(\w+)\s+(\w+)\s+(-?\d+){_HALF}{_HALF}\s*$")


def _wrong(text: str) -> int | None:
    return None if text == "N/A" else int(text)


def parse_nccl_tests_line(line: str) -> NcclTestsRow | None:
    """One data row of all_reduce_perf (size, count, type, redop, root, then time, algbw,
    busbw and #wrong out-of-place and in-place); None for headers, comments and other lines."""
    match = _ROW.match(line)
    if match is None:
        return None
    g = match.groups()
    return {
        "bytes": int(g[0]),
        "count": int(g[1]),
        "type": g[2],
        "redop": g[3],
        "oop_time_us": float(g[5]),
        "oop_time_decimals": len(g[6] or ""),
        "oop_algbw_gbs": float(g[7]),
        "oop_busbw_gbs": float(g[8]),
        "oop_wrong": _wrong(g[9]),
        "ip_time_us": float(g[10]),
        "ip_time_decimals": len(g[11] or ""),
        "ip_algbw_gbs": float(g[12]),
        "ip_busbw_gbs": float(g[13]),
        "ip_wrong": _wrong(g[14]),
    }
