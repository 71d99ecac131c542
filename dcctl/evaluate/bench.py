"""Judge a node's `bench` payload: the preflight, then each benchmark's section with the
thresholds its host's `expect` sets (or the defaults for its GPU model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.evaluate.bench_allreduce import default_min_busbw, evaluate_allreduce
from dcctl.evaluate.bench_fio import evaluate_fio
from dcctl.evaluate.bench_gemm import GemmLimits, evaluate_gemm
from dcctl.evaluate.result import Result
from dcctl.inventory.expect_keys import EXPECT_KEYS, Expectations, expectations

GEMM_DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")
FIO_PREFIX = "fio_"
# The fio thresholds an inventory can set, as the fio evaluator names them (`min_seqread_mb_s`).
FIO_KEYS = tuple(key for key in EXPECT_KEYS if key.startswith(FIO_PREFIX))


def _preflight(payload: Mapping[str, Any]) -> list[Result]:
    pre = payload.get("preflight")
    if not isinstance(pre, Mapping):
        return []
    if pre.get("error"):
        return [Result("bench.preflight", "error", str(pre["error"]), kind="bench")]
    what = "CPU" if pre.get("device") == "cpu" else f"{pre.get('gpus')} GPU(s)"
    versions = {"torch": pre.get("torch"), "cuda": pre.get("cuda"), "nccl": pre.get("nccl")}
    shown = ", ".join(f"{name} {value}" for name, value in versions.items() if value)
    message = f"{shown} in {pre.get('python')}; benchmarks run on {what}"
    return [Result("bench.preflight", "pass", message, versions, kind="bench")]


def _gemm_limits(expect: Expectations) -> GemmLimits:
    floors = {dtype: expect.get(f"gemm_min_tflops_{dtype}") for dtype in GEMM_DTYPES}
    efficiency = expect.get("gemm_min_efficiency")
    return GemmLimits(
        # The field's reference is for bf16 (DESIGN.md, "Benchmarks"); other dtypes are
        # judged only by a TFLOP/s floor the inventory sets.
        min_efficiency={} if efficiency is None else {"bf16": float(efficiency)},
        min_tflops={dtype: float(floor) for dtype, floor in floors.items() if floor is not None},
        max_gpu_spread=expect.get("gemm_max_gpu_spread"),
        max_soak_drop=float(expect.get("soak_max_throughput_drop") or 0.0),
    )


def _allreduce_floor(payload: Mapping[str, Any], expect: Expectations) -> float | None:
    given = expect.get("allreduce_min_busbw_gbs")
    if given is not None:
        return float(given)
    gpus = payload.get("gpus") or []
    if not gpus:
        return None
    nvswitch = bool(payload.get("nvswitch_count"))
    return default_min_busbw(str(gpus[0].get("name") or ""), len(gpus), nvswitch)


def _fio_thresholds(expect: Expectations) -> dict[str, float]:
    thresholds = {}
    for key in FIO_KEYS:
        limit = expect.get(key)
        if limit is not None:
            thresholds[key[len(FIO_PREFIX) :]] = float(limit)
    return thresholds


def evaluate_bench(payload: Mapping[str, Any], raw_expect: Mapping[str, Any]) -> list[Result]:
    expect = expectations(raw_expect)
    results = _preflight(payload)
    gemm = payload.get("gemm")
    if isinstance(gemm, Mapping):
        results += evaluate_gemm(gemm, _gemm_limits(expect))
    allreduce = payload.get("allreduce")
    if isinstance(allreduce, Mapping):
        if allreduce.get("skipped"):
            message = f"node allreduce skipped: {allreduce['skipped']}"
            results.append(Result("bench.allreduce", "skip", message, kind="bench"))
        else:
            results += evaluate_allreduce(allreduce, _allreduce_floor(payload, expect))
    fio = payload.get("fio")
    if isinstance(fio, Mapping):
        results += evaluate_fio(fio, _fio_thresholds(expect))
    return results
