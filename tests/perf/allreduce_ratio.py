"""dcctl's allreduce worker against a bare torch.distributed.all_reduce loop, in one run.

Both run under torchrun with the same backend, process count, sizes, warm-up and timed
iterations, and time the same way: ranks aligned by a one-element allreduce, time.perf_counter
around the batch (a device synchronize at its end on CUDA), the mean per operation, the MAX over
ranks, busbw = S/t * 2(n-1)/n. The two alternate round by round so drift on a shared machine
hits both; per size it prints the ratio of the medians (dcctl busbw / bare busbw, 1.0 = no
overhead) and of the best rounds.

    python tests/perf/allreduce_ratio.py                      # gloo, 2 processes, 64-256 MiB
    python tests/perf/allreduce_ratio.py --device cuda --nproc 8 --sizes 1G,8G

Writes the raw figures of every round to tests/perf/results/allreduce-cpu.json (--out).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from dcctl.node.bench.allreduce import allreduce_worker_argv, bus_bandwidth  # noqa: E402

DEFAULT_OUT = REPO / "tests" / "perf" / "results" / "allreduce-cpu.json"
UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3}

# The reference: nothing but the loop, timed as the worker times it.
BARE_LOOP = """
import json, sys, time
import torch
import torch.distributed as dist

p = json.loads(sys.argv[1])
cuda = p["device"] == "cuda"
if cuda:
    import os
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
dist.init_process_group("nccl" if cuda else "gloo")
device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
rows = []
for size in p["sizes"]:
    x = torch.ones(size // 4, dtype=torch.float32, device=device)
    for _ in range(p["warmup"]):
        dist.all_reduce(x)
    dist.all_reduce(torch.ones(1, device=device))
    sync()
    t0 = time.perf_counter()
    for _ in range(p["iterations"]):
        dist.all_reduce(x)
    sync()
    mean = torch.tensor([(time.perf_counter() - t0) / p["iterations"]], dtype=torch.float64,
                        device=device)
    dist.all_reduce(mean, op=dist.ReduceOp.MAX)
    rows.append({"bytes": size, "time_us": mean.item() * 1e6})
    del x
if dist.get_rank() == 0:
    with open(p["out"], "w") as f:
        json.dump(rows, f)
dist.destroy_process_group()
"""


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in UNITS:
        return int(float(text[:-1]) * UNITS[text[-1]])
    return int(text)


def _run(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"{argv[:6]} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return time.monotonic() - start


def run_dcctl(args: argparse.Namespace, sizes: list[int], work: Path) -> list[dict[str, Any]]:
    out_dir = Path(tempfile.mkdtemp(dir=work))
    params = {
        "out_dir": str(out_dir),
        "device": args.device,
        "min_bytes": sizes[0],
        "max_bytes": sizes[-1],
        "factor": 2,
        "warmup": args.warmup,
        "iterations": args.iterations,
        "min_time_s": 0.0,
    }
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    _run(allreduce_worker_argv(sys.executable, args.nproc, params), env)
    rows = json.loads((out_dir / "rank-0.json").read_text())["sizes"]
    return [{"bytes": r["bytes"], "time_us": r["time_us"]} for r in rows if r["bytes"] in sizes]


def run_bare(args: argparse.Namespace, sizes: list[int], work: Path) -> list[dict[str, Any]]:
    script = work / "bare_allreduce.py"
    script.write_text(BARE_LOOP)
    out = work / "bare.json"
    params = {
        "device": args.device,
        "sizes": sizes,
        "warmup": args.warmup,
        "iterations": args.iterations,
        "out": str(out),
    }
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    argv = [*torchrun, "--nproc-per-node", str(args.nproc), str(script), json.dumps(params)]
    _run(argv, dict(os.environ))
    rows: list[dict[str, Any]] = json.loads(out.read_text())
    return rows


def with_bandwidth(rows: list[dict[str, Any]], ranks: int) -> list[dict[str, Any]]:
    for row in rows:
        algbw = row["bytes"] / 1e9 / (row["time_us"] * 1e-6)
        row.update(algbw_gbs=algbw, busbw_gbs=bus_bandwidth(algbw, ranks))
    return rows


def _figures(runs: list[dict[str, Any]], tool: str, size: int) -> list[float]:
    return [
        row["busbw_gbs"]
        for run in runs
        if run["tool"] == tool
        for row in run["sizes"]
        if row["bytes"] == size
    ]


def summarize(runs: list[dict[str, Any]], sizes: list[int]) -> list[dict[str, Any]]:
    """Per size: the median of each tool's rounds and their ratio, and the same for the best
    round, which a busy machine disturbs least (interference only ever slows a round down)."""
    summary = []
    for size in sizes:
        dcctl, bare = _figures(runs, "dcctl", size), _figures(runs, "bare", size)
        median = statistics.median(dcctl), statistics.median(bare)
        best = max(dcctl), max(bare)
        summary.append(
            {
                "bytes": size,
                "dcctl_busbw_gbs": median[0],
                "bare_busbw_gbs": median[1],
                "ratio": median[0] / median[1],
                "dcctl_best_busbw_gbs": best[0],
                "bare_best_busbw_gbs": best[1],
                "best_ratio": best[0] / best[1],
            }
        )
    return summary


def machine() -> dict[str, Any]:
    import torch

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "loadavg_before": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--sizes", default="64M,128M,256M", help="powers of two apart")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="dcctl and bare runs each")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    sizes = sorted(parse_size(s) for s in args.sizes.split(","))

    document: dict[str, Any] = {
        "schema": "dcctl.perf.allreduce/1",
        "machine": machine(),
        "settings": {**vars(args), "out": str(args.out), "sizes": sizes},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(args.rounds):
            for tool, run in (("dcctl", run_dcctl), ("bare", run_bare)):
                rows = with_bandwidth(run(args, sizes, Path(tmp)), args.nproc)
                document["runs"].append({"tool": tool, "round": round_number, "sizes": rows})
                shown = ", ".join(f"{r['busbw_gbs']:.3f}" for r in rows)
                print(f"round {round_number} {tool:5} busbw GB/s: {shown}", flush=True)
    document["summary"] = summarize(document["runs"], sizes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")

    print(f"\n{'size':>10} {'dcctl GB/s':>11} {'bare GB/s':>10} {'ratio':>6} {'best ratio':>10}")
    for row in document["summary"]:
        size = f"{row['bytes'] // 1024**2} MiB"
        dcctl_bw, bare_bw = row["dcctl_busbw_gbs"], row["bare_busbw_gbs"]
        ratios = f"{row['ratio']:>6.3f} {row['best_ratio']:>10.3f}"
        print(f"{size:>10} {dcctl_bw:>11.3f} {bare_bw:>10.3f} {ratios}")
    print(f"\nraw figures: {args.out}")


if __name__ == "__main__":
    main()
