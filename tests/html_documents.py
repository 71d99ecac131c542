"""A 64-host x 8-GPU acceptance run for the HTML report tests, built through the real
summarizers and judges wherever dcctl has one:

- node checks: the recorded H100 node trees of `run_documents.acceptance_run` (healthy, a PCIe
  x8 fault, an mlx5 warning), spread over the hosts;
- GEMM: the recorded 8x H100 worker files (with their soak windows) scaled per host, through
  `summarize_gemm` and `evaluate_gemm`; one host's GPU 3 slow enough to fail;
- NVML soak samples through `summarize_samples`, one GPU clocking down;
- the node allreduce sweep (1 KiB .. 8 GiB) through `evaluate_allreduce`, one host slow;
- fio through `evaluate_fio`, one host below its floor;
- driver drift through `version_drift` (two hosts on another driver);
- cluster results shaped as dcctl writes them: the cluster allreduce with its sweep, 32 pairs
  (one slow), and certify over 512 ranks with a 1000-step loss curve and one straggler;
- one host unreachable.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

from run_documents import acceptance_run

from dcctl.evaluate.bench_allreduce import evaluate_allreduce
from dcctl.evaluate.bench_fio import evaluate_fio
from dcctl.evaluate.bench_gemm import GemmLimits, evaluate_gemm
from dcctl.evaluate.fleet_compare import version_drift
from dcctl.evaluate.result import Result
from dcctl.node.bench.gemm import summarize_gemm
from dcctl.node.bench.soak import summarize_samples

FIXTURES = Path(__file__).parent / "fixtures"
HOSTS = 64
GPUS = 8
UNREACHABLE = "gpu064"
SLOW_GEMM, SLOW_ALLREDUCE, SLOW_FIO, STRAGGLER_HOST = "gpu007", "gpu011", "gpu013", "gpu021"
DRIFTED = ("gpu030", "gpu031")
SIZES = [1 << exponent for exponent in range(10, 34)]  # 1 KiB .. 8 GiB


def _name(index: int) -> str:
    return f"gpu{index + 1:03d}"


def _gemm_section(scale: float, slow_gpu: int | None) -> dict[str, Any]:
    docs = []
    for path in sorted((FIXTURES / "bench" / "gemm" / "h100x8").glob("rank-*.json")):
        doc = json.loads(path.read_text())
        factor = scale * (0.6 if doc.get("rank") == slow_gpu else 1.0)
        for result in doc.get("results", []):
            for key in ("tflops", "tflops_min", "tflops_max"):
                if isinstance(result.get(key), (int, float)):
                    result[key] *= factor
        for window in (doc.get("soak") or {}).get("windows", []):
            window["tflops"] *= factor
        docs.append(doc)
    section = summarize_gemm(docs)
    samples = [
        {
            "t_s": float(t),
            "index": gpu,
            "sm_mhz": 1980 - (t * 3 if gpu == 5 else 0),
            "temp_c": 60 + t // 10,
            "power_w": 690.0,
            "reasons": 0,
        }
        for t in range(0, 60, 1)
        for gpu in range(GPUS)
    ]
    section["nvml_samples"] = {**summarize_samples(samples), "error": None}
    return section


def _allreduce_section(scale: float) -> dict[str, Any]:
    sizes = []
    for size in SIZES:
        # busbw rises with size towards the node's plateau, as nccl-tests curves do.
        busbw = scale * 480.0 * size / (size + (64 << 20))
        time_us = size / (busbw * 8 / 14) / 1e3
        sizes.append(
            {
                "bytes": size,
                "time_us": time_us,
                "algbw_gbs": busbw * 8 / 14,
                "busbw_gbs": busbw,
                "wrong": 0,
            }
        )
    last = sizes[-1]
    return {
        "ranks": GPUS,
        "backend": "nccl",
        "bytes": last["bytes"],
        "busbw_gbs": last["busbw_gbs"],
        "algbw_gbs": last["algbw_gbs"],
        "wrong_total": 0,
        "errors": [],
        "sizes": sizes,
    }


def _fio_section(scale: float) -> dict[str, Any]:
    jobs = [
        {
            "name": "seqread",
            "mb_s": 6500.0 * scale,
            "iops": 6200.0 * scale,
            "direct": True,
            "clat_us": {"p50": 900.0, "p99": 2100.0, "p99.9": 4000.0},
        },
        {
            "name": "seqwrite",
            "mb_s": 4100.0 * scale,
            "iops": 3900.0 * scale,
            "direct": True,
            "clat_us": {"p50": 1200.0, "p99": 2900.0, "p99.9": 5200.0},
        },
        {
            "name": "randread",
            "mb_s": 410.0 * scale,
            "iops": 105000.0 * scale,
            "direct": True,
            "clat_us": {"p50": 120.0, "p99": 480.0, "p99.9": 900.0},
        },
        {
            "name": "randwrite",
            "mb_s": 380.0 * scale,
            "iops": 97000.0 * scale,
            "direct": True,
            "clat_us": {"p50": 140.0, "p99": 520.0, "p99.9": 1100.0},
        },
    ]
    return {"jobs": jobs}


def _judged(results: list[Result]) -> list[dict[str, Any]]:
    return [{**result.to_json(), "step": "perf"} for result in results]


def _sweep(scale: float) -> list[dict[str, Any]]:
    section = _allreduce_section(scale)
    return [{k: v for k, v in size.items() if k != "time_us"} for size in section["sizes"]]


def _certify(names: list[str]) -> dict[str, Any]:
    ranks = []
    for node, host in enumerate(names):
        for local in range(GPUS):
            slow = host == STRAGGLER_HOST and local == 2
            compute = 0.0412 * (1.35 if slow else 1.0) + 0.0001 * ((node * GPUS + local) % 7)
            ranks.append(
                {
                    "rank": node * GPUS + local,
                    "host": host,
                    "local_rank": local,
                    "gpu": local,
                    "samples_per_s": 1024 / 0.0705,
                    "step_p50_s": 0.0705,
                    "step_p99_s": 0.0791,
                    "local_p50_s": compute,
                    "straggler": slow,
                    "checksum_ok": True,
                    "replay_ok": True,
                }
            )
    curve = [[step, 2.3 * math.exp(-step / 180) + 0.05] for step in range(1, 1001)]
    message = f"not certified: rank {GPUS * names.index(STRAGGLER_HOST) + 2} straggles"
    metrics = {
        "samples_per_s": 7.4e6,
        "samples_per_s_per_rank": 14500.0,
        "step_p50_s": 0.0705,
        "step_p99_s": 0.0791,
        "loss_initial": curve[0][1],
        "loss_final": curve[-1][1],
        "mfu": 0.43,
        "ranks": len(ranks),
        "nodes": len(names),
    }
    thresholds = {
        "loss_target": 0.15,
        "final_loss_steps": 5,
        "max_straggler": 0.1,
        "min_mfu": 0.3,
        "min_samples_per_s": None,
    }
    return {
        **Result(
            "certify", "fail", message, "not certified", thresholds, "bench", metrics=metrics
        ).to_json(),
        "step": "perf",
        "hosts": names,
        "certificate": {
            "verdict": "not certified",
            "reasons": [message],
            "loss_curve": curve,
            "ranks": ranks,
            "thresholds": thresholds,
            "steps": 1000,
            "seed": 1,
        },
    }


def _pairs(names: list[str]) -> list[dict[str, Any]]:
    found = []
    for a, b in zip(names[0::2], names[1::2], strict=False):
        slow = SLOW_ALLREDUCE in (a, b)
        sizes = _sweep(0.4 if slow else 0.9)
        busbw = sizes[-1]["busbw_gbs"]
        status = "fail" if busbw < 300 else "pass"
        metrics = {
            "busbw_gbs": busbw,
            "algbw_gbs": busbw / 2,
            "bytes": sizes[-1]["bytes"],
            "ranks": 2 * GPUS,
        }
        result = Result(
            "cluster.allreduce.pair",
            status,
            f"{a} <-> {b} (pass 1): busbw {busbw:.1f} GB/s",
            busbw,
            {"min_busbw_gbs": 300.0},
            "bench",
            metrics=metrics,
        )
        found.append(
            {**result.to_json(), "step": "perf", "hosts": [a, b], "pass": 1, "sizes": sizes}
        )
    return found


def big_run(tmp_path_factory: Any) -> dict[str, Any]:
    """The 64 x 8 run document (a fresh one per call)."""
    base = acceptance_run(tmp_path_factory)
    templates = [h for h in base["hosts"] if h["error"] is None]
    names = [_name(i) for i in range(HOSTS)]
    hosts = []
    for index, name in enumerate(names):
        if name == UNREACHABLE:
            error = {
                "kind": "unreachable",
                "message": "ssh: connect to 10.0.1.64 port 22: No route to host",
            }
            hosts.append(
                {
                    "name": name,
                    "address": "10.0.1.64",
                    "status": "error",
                    "error": error,
                    "duration_s": 10.0,
                    "facts": {},
                    "results": [],
                }
            )
            continue
        template = templates[index % len(templates)]
        facts = copy.deepcopy(template["facts"])
        for gpu in facts.get("gpus") or []:
            gpu["serial"] = f"16542230{index:03d}{gpu['index']:02d}"
        if name in DRIFTED:
            facts["driver"] = "535.161.08"
        checks = [r for r in copy.deepcopy(template["results"]) if r["step"] == "preflight"]
        scale = 1.0 - 0.002 * (index % 9)
        facts["gemm"] = _gemm_section(scale, 3 if name == SLOW_GEMM else None)
        facts["allreduce"] = _allreduce_section(0.55 if name == SLOW_ALLREDUCE else scale)
        facts["fio"] = _fio_section(0.3 if name == SLOW_FIO else scale)
        bench = (
            evaluate_gemm(facts["gemm"], GemmLimits(max_gpu_spread=0.25))
            + evaluate_allreduce(facts["allreduce"], 360.0)
            + evaluate_fio(facts["fio"], {"min_seqread_mb_s": 3000.0})
        )
        results = checks + _judged(bench)
        hosts.append(
            {
                "name": name,
                "address": f"10.0.1.{index + 1}",
                "status": "passed",
                "error": None,
                "duration_s": 40.0,
                "facts": facts,
                "results": results,
            }
        )
    drift = version_drift(
        {h["name"]: h["facts"] for h in hosts},
        {h["name"]: "NVIDIA H100 80GB HBM3" for h in hosts if h["facts"]},
    )
    for host in hosts:
        host["results"] += [{**r.to_json(), "step": "perf"} for r in drift.get(host["name"], [])]
        if host["error"] is None:
            failed = any(r["status"] == "fail" for r in host["results"])
            host["status"] = "failed" if failed else "passed"
    reachable = [h["name"] for h in hosts if h["error"] is None]
    cluster_sizes = _sweep(0.8)
    cluster = Result(
        "cluster.allreduce",
        "pass",
        f"{len(reachable)} hosts: busbw {cluster_sizes[-1]['busbw_gbs']:.1f} GB/s",
        cluster_sizes[-1]["busbw_gbs"],
        {"min_busbw_gbs": 300.0},
        "bench",
        metrics={
            "busbw_gbs": cluster_sizes[-1]["busbw_gbs"],
            "ranks": GPUS * len(reachable),
            "nodes": len(reachable),
        },
    )
    statuses = [h["status"] for h in hosts]
    return {
        **{
            k: base[k]
            for k in (
                "schema",
                "command",
                "playbook",
                "started_at",
                "finished_at",
                "dcctl_version",
                "inventory",
            )
        },
        "run_id": "20261128T150000Z-run-acceptance-64x8",
        "status": "failed",
        "summary": {
            "hosts": HOSTS,
            "passed": statuses.count("passed"),
            "failed": statuses.count("failed"),
            "error": statuses.count("error"),
            "warnings": sum(r["status"] == "warn" for h in hosts for r in h["results"]),
        },
        "steps": base["steps"],
        "hosts": hosts,
        "cluster_results": [
            {**cluster.to_json(), "step": "perf", "hosts": reachable, "sizes": cluster_sizes},
            *_pairs(reachable),
            _certify(reachable),
        ],
    }
