"""The `bench` node task: GEMM, allreduce and fio, one after another, in one exec.

`python -S runtime bench '{"benchmarks": ["gemm", "allreduce", "fio"], "gemm": {...},
"allreduce": {...}, "fio": {...}, "budgets_s": {"gemm": 90, ...}, "scratch_dir": "/var/tmp/x"}'`

The torch benchmarks first ask the preflight whether torch can run here and sees every GPU;
when it cannot, each of them carries that one error and fio still runs. Each benchmark gets
its own share of the time: it must end by the sum of its own budget and those before it, so
time one leaves unused passes to the next.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from dcctl.node.bench import allreduce, gemm
from dcctl.node.bench.fio import run_fio
from dcctl.node.bench.launch import run_workers
from dcctl.node.bench.preflight import run_preflight
from dcctl.node.bench.soak import SoakSampler
from dcctl.node.facts import DEFAULT_SCRATCH_DIR, TaskParamsError
from dcctl.node.payload import format_progress
from dcctl.node.probes import modules
from dcctl.node.probes.gpu import collect_gpu

BENCHMARKS = ("gemm", "allreduce", "fio")
TORCH_BENCHMARKS = ("gemm", "allreduce")
# gloo processes for the node-scope allreduce on a node without GPUs.
CPU_ALLREDUCE_RANKS = 2
# Defaults by device, then by --quick: a CPU does in a second what a GPU does in microseconds,
# so the same sizes would either measure nothing on a GPU or take minutes on a CPU.
_DEFAULTS: dict[str, dict[tuple[str, bool], dict[str, Any]]] = {
    "gemm": {
        ("cuda", False): {"m": 8192, "n": 8192, "k": 8192, "min_time_s": 1.0,
                          "dtypes": ["bf16", "fp16", "tf32", "fp32", "fp8"]},
        ("cuda", True): {"m": 4096, "n": 4096, "k": 4096, "min_time_s": 0.25,
                         "dtypes": ["bf16", "fp16", "tf32", "fp32", "fp8"]},
        ("cpu", False): {"m": 2048, "n": 2048, "k": 2048, "min_time_s": 1.0, "dtypes": ["fp32"]},
        ("cpu", True): {"m": 512, "n": 512, "k": 512, "min_time_s": 0.25, "dtypes": ["fp32"]},
    },
    "allreduce": {
        ("cuda", False): {"min_bytes": 1024, "max_bytes": 8 << 30},
        ("cuda", True): {"min_bytes": 1024, "max_bytes": 256 << 20, "min_time_s": 0.05},
        ("cpu", False): {"min_bytes": 1024, "max_bytes": 64 << 20},
        ("cpu", True): {"min_bytes": 1024, "max_bytes": 1 << 20, "min_time_s": 0.02},
    },
    "fio": {
        ("any", False): {"runtime_s": 30, "ramp_s": 5, "size_mb": 1024},
        ("any", True): {"runtime_s": 2, "ramp_s": 0, "size_mb": 64},
    },
}  # fmt: skip
# What the GPU list in the payload keeps of NVML's facts: enough to name a GPU in a finding.
_GPU_IDENTITY = ("index", "name", "uuid", "pci_bus_id", "serial", "memory_total_mib")


def _progress(update: dict[str, Any]) -> None:
    import sys

    sys.stdout.write(format_progress(update))
    sys.stdout.flush()


def _params(raw: dict[str, Any]) -> dict[str, Any]:
    benchmarks = raw.get("benchmarks")
    if (
        not isinstance(benchmarks, list)
        or not benchmarks
        or any(name not in BENCHMARKS for name in benchmarks)
    ):
        raise TaskParamsError(f"benchmarks must be a list of {', '.join(BENCHMARKS)}")
    budgets = raw.get("budgets_s")
    if not isinstance(budgets, dict) or any(
        isinstance(budgets.get(name), bool) or not isinstance(budgets.get(name), (int, float))
        or not budgets[name] > 0
        for name in benchmarks
    ):  # fmt: skip
        raise TaskParamsError("budgets_s must give every benchmark a positive number of seconds")
    scratch_dir = raw.get("scratch_dir", DEFAULT_SCRATCH_DIR)
    if not isinstance(scratch_dir, str) or not scratch_dir.startswith("/"):
        raise TaskParamsError(f"scratch_dir must be an absolute path, got {scratch_dir!r}")
    sections = {}
    for name in benchmarks:
        section = raw.get(name, {})
        if not isinstance(section, dict):
            raise TaskParamsError(f"{name} must be a JSON object")
        _check_worker_params(name, section, raw.get("quick") is True)
        sections[name] = section
    return {"benchmarks": list(dict.fromkeys(benchmarks)), "budgets_s": budgets,
            "scratch_dir": scratch_dir, "quick": raw.get("quick") is True, **sections}  # fmt: skip


def with_defaults(name: str, section: dict[str, Any], device: str, quick: bool) -> dict[str, Any]:
    """The benchmark's parameters: what the controller asked, over the defaults for the
    device and for --quick."""
    table = _DEFAULTS[name]
    defaults = table.get((device, quick)) or table[("any", quick)]
    return {**defaults, **section}


def _check_worker_params(name: str, section: dict[str, Any], quick: bool) -> None:
    """Before anything runs: a bad request is one error, not a traceback per rank after the
    benchmarks before it have run. The device is the preflight's to decide; any will do here."""
    checks = {"gemm": (gemm.worker_params, gemm.BadParams),
              "allreduce": (allreduce.worker_params, allreduce.BadParams)}  # fmt: skip
    if name in checks:
        check, bad = checks[name]
        try:
            check({**with_defaults(name, section, "cpu", quick), "device": "cpu", "out_dir": "-"})
        except bad as exc:
            raise TaskParamsError(f"{name}: {exc}") from None


def _run_gemm(pre: dict[str, Any], raw: dict[str, Any], deadline: float) -> dict[str, Any]:
    params = {**raw, "device": pre["device"]}
    ranks = max(1, pre["gpus"])

    def command(full: dict[str, Any]) -> list[str]:
        return gemm.gemm_worker_argv(pre["python"], ranks, full)

    sampler = SoakSampler() if params.get("duration_s") and pre["gpus"] else None
    with sampler if sampler is not None else contextlib.nullcontext():
        run = run_workers(command, params, deadline)
    section = gemm.summarize_gemm(run.rank_docs)
    section["error"] = run.error(ranks, "the GEMM workers")
    if sampler is not None:
        section["nvml_samples"] = sampler.summary()
    return section


def _run_allreduce(pre: dict[str, Any], raw: dict[str, Any], deadline: float) -> dict[str, Any]:
    params = {**raw, "device": pre["device"]}
    ranks = pre["gpus"] if pre["gpus"] else CPU_ALLREDUCE_RANKS
    if ranks < 2:
        return {
            "bench": "allreduce",
            "ranks": ranks,
            "skipped": "one GPU: nothing to reduce across",
        }

    def command(full: dict[str, Any]) -> list[str]:
        return allreduce.allreduce_worker_argv(pre["python"], ranks, full)

    run = run_workers(command, params, deadline)
    section: dict[str, Any] = dict(allreduce.summarize_allreduce(run.rank_docs, ranks))
    section["error"] = run.error(ranks, "the allreduce workers")
    return section


def _nvswitch_count() -> int | None:
    """NVSwitches decide which allreduce figure a node of this GPU model should reach."""
    try:
        return modules.collect_nvswitch_count()
    except Exception:  # a figure without a default threshold, not a failed benchmark
        return None


def bench_task(raw: dict[str, Any]) -> dict[str, Any]:
    """Task entry point; see the module docstring for the parameters."""
    params = _params(raw)
    gpu = collect_gpu()
    gpus = gpu.get("gpus") or []
    payload: dict[str, Any] = {
        "nvswitch_count": _nvswitch_count(),
        "driver": gpu.get("driver"),
        "cuda": gpu.get("cuda"),
        "gpus": [{key: g.get(key) for key in _GPU_IDENTITY} for g in gpus],
    }
    pre: dict[str, Any] | None = None
    if any(name in TORCH_BENCHMARKS for name in params["benchmarks"]):
        _progress({"bench": "preflight"})
        pre = run_preflight(gpus, gpu.get("driver"))
        payload["preflight"] = pre
    # The budgets start after the preflight, which the controller's time limit allows for.
    deadline = time.monotonic()
    device = pre["device"] if pre is not None else "any"
    for step, name in enumerate(params["benchmarks"], start=1):
        deadline += float(params["budgets_s"][name])
        _progress({"bench": name, "step": step, "of": len(params["benchmarks"])})
        section = with_defaults(name, params[name], device, params["quick"])
        if name == "fio":
            payload["fio"] = dict(run_fio({**section, "scratch_dir": params["scratch_dir"]},
                                          deadline))  # fmt: skip
        elif pre is not None and pre["error"]:
            payload[name] = {"bench": name, "error": pre["error"]}
        elif name == "gemm" and pre is not None:
            payload["gemm"] = _run_gemm(pre, section, deadline)
        elif pre is not None:
            payload["allreduce"] = _run_allreduce(pre, section, deadline)
    return payload
