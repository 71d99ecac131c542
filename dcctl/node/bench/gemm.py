"""GEMM benchmark: the worker's parameters, its command line, and the node summary of its
rank files.

The launcher (a node task under `python -S`, no torch), the controller's evaluator and the torch
worker (`gemm_worker`) all import this module, so it is standard library only and Python 3.8
syntax.

Figures: TFLOP/s = 2*m*n*k / t / 1e12 per timed batch; a GPU's figure is the median of its
batches. Correctness: every rank multiplies identical seeded inputs, so GPUs of one model must
produce bitwise identical results; a GPU whose checksum differs from the majority of its model
is named (silent data corruption), and each rank also checks a slice against fp64.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from typing import Any, TypedDict, cast

from dcctl.node.bench.soak import downsampled

WORKER_MODULE = "dcctl.node.bench.gemm_worker"
DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")
DEVICES = ("cuda", "cpu")
DEFAULT_MIN_TIME_S = 1.0
DEFAULT_WARMUP = 10
DEFAULT_SEED = 0
DEFAULT_WINDOW_S = 5.0
# 2^16 per side already asks for 16 GiB per bf16 operand; larger is a typo.
MAX_DIM = 65536
# Test hook, read by the worker only: this rank flips one bit of its result before checksumming.
CORRUPT_RANK_ENV = "DCCTL_TEST_CORRUPT_RANK"


class BadParams(ValueError):
    """Worker parameters the benchmark cannot run with."""


class DtypeResult(TypedDict, total=False):
    """One dtype on one rank; a dtype the device cannot run carries only dtype and skipped."""

    dtype: str
    skipped: str
    m: int
    n: int
    k: int
    iterations: int
    times_ms: list[float]
    tflops: float
    tflops_min: float
    tflops_max: float
    checksum: str
    ref_max_rel_err: float | None
    ref_ok: bool
    tolerance: float


class SoakWindow(TypedDict):
    t_s: float
    tflops: float


class SoakDoc(TypedDict, total=False):
    dtype: str
    window_s: float
    windows: list[SoakWindow]
    # The result after the soak, compared with the same rank's measurement before it.
    checksum: str


class RankDoc(TypedDict, total=False):
    """`out_dir/rank-<r>.json`; a rank that failed carries only `rank` and `error`."""

    rank: int
    error: str
    device: str
    name: str
    pci_bus_id: str | None
    results: list[DtypeResult]
    soak: SoakDoc | None


# --- parameters ----------------------------------------------------------------------------


def _positive_int(raw: dict[str, Any], key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_DIM:
        raise BadParams(f"{key} must be an integer from 1 to {MAX_DIM}, got {value!r}")
    return value


def _number(raw: dict[str, Any], key: str, default: float | None, low: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise BadParams(f"{key} must be a number above {low}, got {value!r}")
    return float(value)


def _dtypes(raw: dict[str, Any]) -> list[str]:
    value = raw.get("dtypes")
    if not isinstance(value, list) or not value or any(d not in DTYPES for d in value):
        raise BadParams(f"dtypes must be a non-empty list of {', '.join(DTYPES)}; got {value!r}")
    return list(dict.fromkeys(value))


def worker_params(raw: Any) -> dict[str, Any]:
    """The worker's parameters with defaults filled in; BadParams names the first bad one."""
    if not isinstance(raw, dict):
        raise BadParams(f"params must be a JSON object, got {type(raw).__name__}")
    if not isinstance(raw.get("out_dir"), str):
        raise BadParams(f"out_dir must be a string, got {raw.get('out_dir')!r}")
    if raw.get("device") not in DEVICES:
        raise BadParams(f"device must be one of {', '.join(DEVICES)}, got {raw.get('device')!r}")
    warmup = raw.get("warmup", DEFAULT_WARMUP)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise BadParams(f"warmup must be a non-negative integer, got {warmup!r}")
    seed = raw.get("seed", DEFAULT_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise BadParams(f"seed must be a non-negative integer, got {seed!r}")
    duration = raw.get("duration_s")
    return {
        "out_dir": raw["out_dir"],
        "device": raw["device"],
        "dtypes": _dtypes(raw),
        "m": _positive_int(raw, "m"),
        "n": _positive_int(raw, "n"),
        "k": _positive_int(raw, "k"),
        "min_time_s": _number(raw, "min_time_s", DEFAULT_MIN_TIME_S, 0.0),
        "warmup": warmup,
        "seed": seed,
        "duration_s": None if duration is None else _number(raw, "duration_s", None, 0.0),
        "window_s": _number(raw, "window_s", DEFAULT_WINDOW_S, 0.0),
    }


def gemm_worker_argv(python: str, gpus: int, params: dict[str, Any]) -> list[str]:
    """The worker's command line: one process (CPU, or one GPU), or torchrun with one process
    per GPU. The caller sets PYTHONPATH to the runtime root."""
    payload = json.dumps(params, separators=(",", ":"), sort_keys=True)
    if gpus > 1:
        torchrun = [python, "-m", "torch.distributed.run", "--standalone"]
        return [*torchrun, "--nproc-per-node", str(gpus), "-m", WORKER_MODULE, payload]
    return [python, "-m", WORKER_MODULE, payload]


def tflops(m: int, n: int, k: int, iterations: int, seconds: float) -> float:
    """TFLOP/s of `iterations` m*n*k products taking `seconds` in all."""
    if seconds <= 0:
        raise ValueError(f"time must be positive, got {seconds!r}")
    return 2.0 * m * n * k * iterations / seconds / 1e12


# --- node summary --------------------------------------------------------------------------


def _identity(doc: RankDoc) -> dict[str, Any]:
    return {
        "rank": doc.get("rank"),
        "device": doc.get("device"),
        "name": doc.get("name"),
        "pci_bus_id": doc.get("pci_bus_id"),
    }


def _results(doc: RankDoc) -> list[DtypeResult]:
    """The rank's dtype entries, whatever else its file holds."""
    found = doc.get("results")
    return [entry for entry in found if isinstance(entry, dict)] if isinstance(found, list) else []


def _dtype_order(docs: list[RankDoc]) -> list[str]:
    seen: dict[str, None] = {}
    for doc in docs:
        for result in _results(doc):
            seen.setdefault(str(result.get("dtype")), None)
    return list(seen)


def _figures(doc: RankDoc, result: DtypeResult) -> dict[str, Any]:
    figures = ("tflops", "tflops_min", "tflops_max", "iterations", "checksum")
    keys = (*figures, "ref_max_rel_err", "ref_ok", "tolerance")
    return {**_identity(doc), **{key: result.get(key) for key in keys}}


def _slowest(gpus: list[dict[str, Any]], median: float) -> dict[str, Any]:
    slow = min(gpus, key=lambda gpu: (gpu["tflops"], _rank_key(gpu)))
    ratio = slow["tflops"] / median if median > 0 else None
    keys = ("rank", "device", "name", "pci_bus_id", "tflops")
    return {**{key: slow[key] for key in keys}, "vs_median": ratio}


def _checksum_groups(dtype: str, gpus: list[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    """Per model: the majority checksum and the GPUs that differ from it. Without a strict
    majority no GPU can be called the odd one, so every member is listed."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for gpu in gpus:
        by_model.setdefault(str(gpu["name"]), []).append(gpu)
    groups, mismatches = [], []
    for name, members in by_model.items():
        counts = Counter(gpu["checksum"] for gpu in members)
        checksum, votes = counts.most_common(1)[0]
        majority = checksum if votes * 2 > len(members) else None
        odd = [gpu for gpu in members if majority is None or gpu["checksum"] != majority]
        # One GPU of a model has nothing to be compared with.
        odd = odd if len(members) > 1 else []
        groups.append({"name": name, "ranks": [g["rank"] for g in members], "majority": majority})
        for gpu in odd:
            keys = ("rank", "device", "name", "pci_bus_id", "checksum")
            entry = {key: gpu[key] for key in keys}
            mismatches.append(
                {**entry, "dtype": dtype, "majority": majority, "group": len(members)}
            )
    return groups, mismatches


def _reference_failures(dtype: str, gpus: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = ("rank", "device", "name", "pci_bus_id", "ref_max_rel_err", "tolerance")
    failed = [gpu for gpu in gpus if gpu.get("ref_ok") is not True]
    return [{**{key: gpu.get(key) for key in keys}, "dtype": dtype} for gpu in failed]


def _dtype_summary(dtype: str, docs: list[RankDoc]) -> dict[str, Any]:
    gpus, skipped = [], []
    shape: dict[str, Any] = {}
    for doc in docs:
        for result in _results(doc):
            if result.get("dtype") != dtype:
                continue
            if "skipped" in result:
                skipped.append({**_identity(doc), "reason": result["skipped"]})
            elif isinstance(result.get("tflops"), (int, float)):
                gpus.append(_figures(doc, result))
                shape = {key: result.get(key) for key in ("m", "n", "k")}
    median = statistics.median(g["tflops"] for g in gpus) if gpus else None
    groups, mismatches = _checksum_groups(dtype, gpus)
    return {
        "dtype": dtype,
        **shape,
        "gpus": gpus,
        "skipped": skipped,
        "median_tflops": median,
        "slowest": _slowest(gpus, median) if gpus and median is not None else None,
        "checksum_groups": groups,
        "checksum_mismatches": mismatches,
        "reference_failures": _reference_failures(dtype, gpus),
    }


def _soak_gpu(doc: RankDoc, soak: SoakDoc, before: str | None) -> dict[str, Any] | None:
    windows = [w for w in soak.get("windows") or [] if isinstance(w, dict)]
    timed = [w for w in windows if isinstance(w.get("tflops"), (int, float)) and w["tflops"] > 0]
    figures = [w["tflops"] for w in timed]
    if not figures:
        return None
    median = statistics.median(figures)
    after = soak.get("checksum")
    return {
        **_identity(doc),
        "windows": len(figures),
        "first_tflops": figures[0],
        "last_tflops": figures[-1],
        "min_tflops": min(figures),
        "median_tflops": median,
        "last_vs_first": figures[-1] / figures[0],
        "min_vs_median": min(figures) / median,
        # None when there is nothing to compare (no checksum before or after the soak).
        "checksum_stable": None if before is None or after is None else before == after,
        # Throughput over time for the report's plot: [t_s, tflops] per window.
        "series": downsampled([[w.get("t_s"), w["tflops"]] for w in timed]),
    }


def _soak_summary(docs: list[RankDoc]) -> dict[str, Any] | None:
    gpus, dtype, window_s = [], None, None
    for doc in docs:
        soak = doc.get("soak")
        if not isinstance(soak, dict):
            continue
        dtype, window_s = soak.get("dtype"), soak.get("window_s")
        measured = [r for r in _results(doc) if r.get("dtype") == dtype]
        before = measured[0].get("checksum") if measured else None
        summary = _soak_gpu(doc, soak, before)
        if summary is not None:
            gpus.append(summary)
    if not gpus:
        return None
    worst = min(gpus, key=lambda gpu: (gpu["last_vs_first"], gpu["rank"]))
    return {"dtype": dtype, "window_s": window_s, "gpus": gpus, "worst": worst}


def _rank_key(doc: Any) -> tuple[int, int]:
    rank = doc.get("rank")
    return (0, rank) if isinstance(rank, int) and not isinstance(rank, bool) else (1, 0)


def summarize_gemm(rank_docs: list[Any]) -> dict[str, Any]:
    """The payload section from the rank files: per GPU and dtype figures, node median and
    slowest GPU, checksum agreement per model, fp64 reference failures, soak, rank errors."""
    docs: list[RankDoc] = sorted(
        (cast(RankDoc, d) for d in rank_docs if isinstance(d, dict)), key=_rank_key
    )
    errors = [
        {"rank": d.get("rank"), "device": d.get("device"), "error": str(d["error"])}
        for d in docs
        if d.get("error") is not None
    ]
    good = [d for d in docs if d.get("error") is None]
    dtypes = [_dtype_summary(dtype, good) for dtype in _dtype_order(good)]
    return {
        "bench": "gemm",
        "devices": [_identity(d) for d in good],
        "dtypes": dtypes,
        "checksum_mismatches": [m for d in dtypes for m in d["checksum_mismatches"]],
        "reference_failures": [f for d in dtypes for f in d["reference_failures"]],
        "soak": _soak_summary(good),
        "errors": errors,
    }
