"""`dcctl bench gemm|allreduce|fio|all`: the figures a rack acceptance signs, on every host."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from dcctl.cli.bounds import (
    MAX_TIMEOUT_S,
    seconds_between,
)
from dcctl.cli.gang_options import join_timeout_option, nproc_per_node_option, port_option
from dcctl.cli.options import global_options, reporting_errors
from dcctl.report.report_files import report_option

DTYPES = ("bf16", "fp16", "tf32", "fp32", "fp8")
# Seconds the node may spend on the preflight (importing torch, initialising CUDA) before the
# benchmarks' own budgets start; the node's own limit is the same.
PREFLIGHT_ALLOWANCE_S = 180.0
# Beyond the benchmarks' budgets: connecting, shipping the runtime, reading NVML.
OVERHEAD_S = 60.0
MAX_SOAK_S = 24 * 3600.0


class Scope(str, Enum):
    node = "node"
    cluster = "cluster"
    pairs = "pairs"


class Benchmark(str, Enum):
    gemm = "gemm"
    allreduce = "allreduce"
    fio = "fio"
    all = "all"


def parse_size(text: str | None) -> dict[str, int]:
    """`--size 8192` (square) or `--size 4096,8192,1024` (m,n,k)."""
    if text is None:
        return {}
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 3) or not all(part.isdigit() and 0 < int(part) <= 65536
                                           for part in parts):  # fmt: skip
        raise typer.BadParameter(f"expected N or M,N,K with each from 1 to 65536, got {text!r}")
    m, n, k = (int(parts[0]),) * 3 if len(parts) == 1 else (int(part) for part in parts)
    return {"m": m, "n": n, "k": k}


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _bytes(text: str) -> int:
    number, unit = text.rstrip("KMGkmg"), text[len(text.rstrip("KMGkmg")) :].upper()
    if not number.isdigit() or len(unit) > 1 or int(number) == 0:
        raise ValueError(text)
    return int(number) * _UNITS[unit]


def parse_sweep(text: str | None) -> dict[str, int]:
    """`--sizes MIN:MAX[:FACTOR]` with K, M, G as KiB, MiB, GiB: `1K:8G`, `64M:4G:4`."""
    if text is None:
        return {}
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3):
            raise ValueError(text)
        low, high = _bytes(parts[0]), _bytes(parts[1])
        factor = int(parts[2]) if len(parts) == 3 else 2
    except ValueError:
        raise typer.BadParameter(f"expected MIN:MAX[:FACTOR] such as 1K:8G, got {text!r}") from None
    if low > high or factor < 2 or low % 4:
        wanted = "MIN <= MAX, a FACTOR of 2 or more and MIN a multiple of 4 bytes"
        raise typer.BadParameter(f"expected {wanted}, got {text!r}")
    return {"min_bytes": low, "max_bytes": high, "factor": factor}


def budgets(benchmarks: list[str], quick: bool, dtypes: int, duration_s: float) -> dict[str, float]:
    """Seconds each benchmark may take on a node; generous, since a slow node must still
    report its figures rather than time out."""
    per_dtype = 30.0 if quick else 90.0
    table = {
        "gemm": per_dtype * dtypes + duration_s + (30.0 if quick else 120.0),
        "allreduce": 60.0 if quick else 600.0,
        "fio": 4 * (2 + 0 + 20) + 30.0 if quick else 4 * (30 + 5 + 30) + 60.0,
    }
    return {name: table[name] for name in benchmarks}


def bench(
    ctx: typer.Context,
    benchmark: Benchmark = typer.Argument(
        Benchmark.all, help="gemm, allreduce, fio, or all three in that order."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Seconds, not minutes: small sizes and short fio jobs."
    ),
    dtype: list[str] = typer.Option(
        [],
        "--dtype",
        help="GEMM dtype, repeatable: bf16, fp16, tf32, fp32, fp8 (default: all on GPUs, "
        "fp32 on CPUs).",
        show_default=False,
    ),
    size: str | None = typer.Option(
        None,
        "--size",
        help="GEMM size: N (square) or M,N,K (default 8192 on GPUs, 2048 on CPUs).",
        show_default=False,
    ),
    sizes: str | None = typer.Option(
        None,
        "--sizes",
        help="Allreduce sweep MIN:MAX[:FACTOR], K/M/G = KiB/MiB/GiB (default 1K:8G:2 on GPUs, "
        "capped by free memory; 1K:64M on CPUs).",
        show_default=False,
    ),
    duration: float = typer.Option(
        0.0,
        "--duration",
        callback=seconds_between(0.0, MAX_SOAK_S),
        help="Soak: keep the GEMM running this many seconds on every GPU while NVML samples "
        "clocks, temperature, power and throttling.",
    ),
    timeout: float | None = typer.Option(
        None,
        "--timeout",
        callback=lambda v: v if v is None else seconds_between(1.0, MAX_TIMEOUT_S)(v),
        help="Seconds each host may take in all (default: from the benchmarks chosen).",
        show_default=False,
    ),
    scope: Scope = typer.Option(
        Scope.node,
        "--scope",
        help="allreduce only: node (each node alone), cluster (all selected nodes in one "
        "job) or pairs (every pair at once, then the slow ones re-paired to name the node).",
    ),
    net_only: bool = typer.Option(
        False,
        "--net-only",
        help="cluster/pairs: NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1, so the network between "
        "nodes is measured, not NVLink or shared memory.",
    ),
    nproc_per_node: int | None = nproc_per_node_option("cluster/pairs: "),
    port: int | None = port_option("cluster/pairs: "),
    join_timeout: float = join_timeout_option("cluster/pairs: "),
    report_file: Path | None = report_option(),
) -> None:
    """Run GEMM, node-scope allreduce and fio on every host, and judge the figures.

    GEMM runs on all GPUs of a node at once (one process per GPU) with identical seeded inputs:
    TFLOP/s per GPU against the model's dense peak, a bitwise comparison of the results across
    GPUs, and a check against fp64. Allreduce reports nccl-tests' algbw and busbw over a size
    sweep and fails on any wrong element. fio runs only inside the host's scratch_dir.
    Thresholds come from `expect` (gemm_min_efficiency, allreduce_min_busbw_gbs,
    fio_min_seqread_mb_s ...) or from defaults per GPU model. Examples:

      dcctl bench all --quick

      dcctl -i rack1.yaml bench gemm --dtype bf16 --duration 600

      dcctl -i rack1.yaml -v bench allreduce        # with the per-size busbw table

      dcctl -i rack1.yaml bench allreduce --sizes 64M:16G

      dcctl -i rack1.yaml --json bench fio | jq '.hosts[].results[].metrics'

      dcctl -i rack1.yaml bench allreduce --scope cluster --net-only

      dcctl -i rack1.yaml bench allreduce --scope pairs     # names a slow node
    """
    from dcctl.cli.step import execute_playbook
    from dcctl.playbook.model import one_step

    if scope is not Scope.node and benchmark is not Benchmark.allreduce:
        raise typer.BadParameter("only allreduce spans nodes", param_hint="--scope")
    if scope is Scope.node and (net_only or nproc_per_node or port):
        raise typer.BadParameter("applies to --scope cluster or pairs only",
                                 param_hint="--net-only/--nproc-per-node/--port")  # fmt: skip
    bad = [name for name in dtype if name not in DTYPES]
    if bad:
        raise typer.BadParameter(f"unknown dtype {bad[0]!r}; expected one of {', '.join(DTYPES)}",
                                 param_hint="--dtype")  # fmt: skip
    parse_size(size)  # refused here, as a usage error, before anything runs
    parse_sweep(sizes)
    options = {
        "benchmark": benchmark.value,
        "quick": quick,
        "dtype": list(dtype),
        "size": size,
        "sizes": sizes,
        "duration": duration,
        "scope": scope.value,
        "net_only": net_only,
        "nproc_per_node": nproc_per_node,
        "port": port,
        "join_timeout": join_timeout,
    }
    with reporting_errors():
        book = one_step("bench", options, timeout)
        code = execute_playbook(global_options(ctx), book, "bench", report=report_file)
    raise typer.Exit(code)
