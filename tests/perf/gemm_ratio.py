"""GEMM benchmark overhead: dcctl's worker against a bare torch.matmul loop of the same work.

A first worker run alone fixes the batch shape. Then each round runs, as child processes of
this interpreter:
- the GEMM worker exactly as the launcher starts it (gemm_worker_argv, PYTHONPATH at the
  runtime root), one process, on `--device`;
- a bare loop: the same seeded inputs, the same dtype and size, `warmup` plain
  `torch.matmul(a, b)` calls, then as many batches of as many products as the first worker run
  timed, each batch timed the same way (time.perf_counter on CPU, CUDA events on a GPU), and
  the median batch's TFLOP/s;
one after the other in alternating order, or with `--concurrent` (CPU only) side by side.

It prints each round's figures and dcctl/bare (the ratio of the median figures over all
rounds), and writes everything as JSON, with the 1-minute load average before each round. The
issue's targets: >= 0.9 on CPU, >= 0.97 on a GPU.

On a CPU shared with other work, sequential rounds scatter widely (a CPU-bound loop's wall time
follows whatever else runs): `--threads 1 --concurrent` gives both children one thread each at
the same moments, so outside load falls on both alike.

    python tests/perf/gemm_ratio.py --device cpu --size 2048 --dtype fp32 \\
        --out tests/perf/results/gemm-cpu.json
    python tests/perf/gemm_ratio.py --device cpu --threads 1 --concurrent --rounds 6
    python tests/perf/gemm_ratio.py --device cuda --dtype bf16 --size 8192 \\
        --out tests/perf/results/gemm-gpu.json

Not a pytest module (name and folder are outside pyproject's testpaths).
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dcctl.node.bench.gemm import gemm_worker_argv, tflops  # noqa: E402

CHILD_TIMEOUT_S = 1200


# --- the bare loop (runs in a child process) -----------------------------------------------


def bare_loop(spec: dict[str, Any]) -> dict[str, Any]:
    """The same work as the worker, with nothing around it."""
    import torch

    device = torch.device(spec["device"])
    cast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec["dtype"], torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = spec["dtype"] == "tf32"
    generator = torch.Generator().manual_seed(spec["seed"])
    m, n, k = spec["size"], spec["size"], spec["size"]
    a = torch.randn((m, k), generator=generator).to(device).to(cast)
    b = torch.randn((k, n), generator=generator).to(device).to(cast)
    for _ in range(spec["warmup"]):
        torch.matmul(a, b)
    event: Any = torch.cuda.Event
    times = []
    for _ in range(spec["batches"]):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            start, end = event(enable_timing=True), event(enable_timing=True)
            start.record()
            for _ in range(spec["iterations"]):
                torch.matmul(a, b)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000.0)
        else:
            began = time.perf_counter()
            for _ in range(spec["iterations"]):
                torch.matmul(a, b)
            times.append(time.perf_counter() - began)
    figures = [tflops(m, n, k, spec["iterations"], t) for t in times]
    return {"tflops": statistics.median(figures), "times_ms": [t * 1000 for t in times]}


# --- the two runs --------------------------------------------------------------------------


def child_env(args: argparse.Namespace) -> dict[str, str]:
    """Both children's environment; --threads pins their intra-op threads alike."""
    if args.threads is None:
        return dict(os.environ)
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads)}


class Child:
    """A child process started now, and where its result will be."""

    def __init__(self, argv: list[str], env: dict[str, str], out_dir: str | None = None) -> None:
        self.out_dir = out_dir
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait(self) -> tuple[str, float]:
        stdout, stderr = self.proc.communicate(timeout=CHILD_TIMEOUT_S)
        if self.proc.returncode != 0:
            raise SystemExit(f"child failed ({self.proc.returncode}): {stderr.decode()[-2000:]}")
        return stdout.decode(), time.perf_counter() - self.began


def start_worker(args: argparse.Namespace, out_dir: str) -> Child:
    params = {
        "out_dir": out_dir,
        "device": args.device,
        "dtypes": [args.dtype],
        "m": args.size,
        "n": args.size,
        "k": args.size,
        "min_time_s": args.min_time_s,
        "warmup": args.warmup,
        "seed": 0,
    }
    env = {**child_env(args), "PYTHONPATH": str(ROOT)}
    return Child(gemm_worker_argv(sys.executable, 1, params), env, out_dir)


def finish_worker(child: Child) -> dict[str, Any]:
    _, wall = child.wait()
    doc = json.loads((Path(str(child.out_dir)) / "rank-0.json").read_text())
    result = doc["results"][0]
    if "tflops" not in result:
        raise SystemExit(f"the worker did not measure {result['dtype']}: {result}")
    return {**result, "wall_s": wall}


def bare_spec(args: argparse.Namespace, worker: dict[str, Any]) -> dict[str, Any]:
    """The bare loop's work: the worker's batch count and products per batch."""
    batches = len(worker["times_ms"])
    return {
        "device": args.device,
        "dtype": args.dtype,
        "size": args.size,
        "seed": 0,
        "warmup": args.warmup,
        "batches": batches,
        "iterations": worker["iterations"] // batches,
    }


def start_bare(args: argparse.Namespace, spec: dict[str, Any]) -> Child:
    return Child([sys.executable, __file__, "--bare", json.dumps(spec)], child_env(args))


def finish_bare(child: Child, spec: dict[str, Any]) -> dict[str, Any]:
    stdout, wall = child.wait()
    return {**json.loads(stdout), "spec": spec, "wall_s": wall}


def one_round(args: argparse.Namespace, spec: dict[str, Any], number: int) -> tuple[Any, Any]:
    """(worker, bare) figures: side by side with --concurrent, else one after the other in
    alternating order, so a drift in machine load favours neither."""
    with tempfile.TemporaryDirectory(prefix="gemm-ratio-") as out_dir:
        if args.concurrent:
            worker, bare = start_worker(args, out_dir), start_bare(args, spec)
            return finish_worker(worker), finish_bare(bare, spec)
        if number % 2:
            bare_result = finish_bare(start_bare(args, spec), spec)
            return finish_worker(start_worker(args, out_dir)), bare_result
        worker_result = finish_worker(start_worker(args, out_dir))
        return worker_result, finish_bare(start_bare(args, spec), spec)


def calibration(args: argparse.Namespace) -> dict[str, Any]:
    """One worker run alone: the batch shape the bare loop copies."""
    with tempfile.TemporaryDirectory(prefix="gemm-ratio-") as out_dir:
        return finish_worker(start_worker(args, out_dir))


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), cpu
            )
    except OSError:
        pass
    return {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--min-time-s", type=float, default=2.0)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    # On a shared machine one thread per process is far less sensitive to other load: a
    # two-thread GEMM waits for whichever thread the scheduler preempted.
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both")
    # CPU only: both children at once (with --threads 1 on two or more cores), so load from
    # other work falls on both alike instead of on whichever ran at the wrong moment.
    parser.add_argument("--concurrent", action="store_true", help="run the two side by side")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/perf/results/gemm-cpu.json")
    parser.add_argument("--bare", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.concurrent and args.device != "cpu":
        parser.error("--concurrent is for CPU runs: two GEMMs on one GPU time each other")
    if args.bare:
        print(json.dumps(bare_loop(json.loads(args.bare))))
        return 0
    shape = calibration(args)
    spec = bare_spec(args, shape)
    rounds: list[dict[str, Any]] = []
    for number in range(args.rounds):
        load = os.getloadavg()[0]
        worker, bare = one_round(args, spec, number)
        ratio = worker["tflops"] / bare["tflops"]
        rounds.append({"load_1min": load, "dcctl": worker, "bare": bare, "ratio": ratio})
        print(
            f"round {number + 1}: dcctl {worker['tflops']:.4g} TFLOP/s, "
            f"bare {bare['tflops']:.4g} TFLOP/s, dcctl/bare {ratio:.3f} (load {load:.1f})"
        )
    dcctl = statistics.median(r["dcctl"]["tflops"] for r in rounds)
    bare = statistics.median(r["bare"]["tflops"] for r in rounds)
    summary = {
        "schema": "dcctl.perf.gemm/1",
        "calibration": shape,
        "settings": {k: v for k, v in vars(args).items() if k not in ("bare", "out")},
        "machine": machine(),
        "rounds": rounds,
        "dcctl_tflops": dcctl,
        "bare_tflops": bare,
        "ratio": dcctl / bare,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"dcctl/bare {dcctl / bare:.3f} (median {dcctl:.4g} vs {bare:.4g} TFLOP/s) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
