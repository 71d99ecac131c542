"""Node-scope allreduce worker: one process per GPU (NCCL), or per CPU rank (gloo), under
torchrun, started by the allreduce launcher as

    PYTHONPATH=<runtime root> python -m torch.distributed.run --standalone \\
        --nproc-per-node N -m dcctl.node.bench.allreduce_worker '<json params>'

Params are read by dcctl.node.bench.allreduce.worker_params. Each rank writes
`out_dir/rank-<r>.json` (tmp file + rename); rank 0's holds the sweep. A rank that fails writes
`{"rank": r, "error": "Type: message"}` and exits 1; torchrun then stops the others.

One size, as nccl-tests measures it:
- `warmup` operations, then the timed count, agreed by every rank (collectives must pair up):
  at least `iterations`, more until `min_time_s` of work at the warm-up's pace;
- ranks aligned by a one-element allreduce and a device synchronize, then the operations
  enqueued back to back, timed by time.perf_counter around the batch with a device synchronize
  at its end (nccl-tests' host timer, not CUDA events); each rank's mean per operation, then the
  MAX over ranks: the slowest rank (nccl-tests' default `-a 1` averages the ranks; for a
  collective, which ends together on every rank, the two differ little);
- in place: torch's all_reduce writes its result over its input, which is nccl-tests' in-place
  column (its default output shows both). The timed values grow with every sum and may reach
  inf, which changes nothing in the time an addition takes;
- then one verification allreduce, untimed, on the known pattern (allreduce.pattern_period):
  every rank counts the elements of its result that differ from the exact sum, and the counts
  are summed over ranks (nccl-tests' `#wrong`).

Test hook: with DCCTL_TEST_CORRUPT_RANK=<r> set, rank r adds 1 to one element of its input after
writing the pattern, so each rank's result holds one wrong element per size.

Only rank 0 writes to stdout, and only progress lines: fd 1 is pointed at stderr at start, so
what NCCL (NCCL_DEBUG prints to stdout), torch or a library writes there cannot reach the stream
the launcher relays; progress goes to a copy of the original stdout.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import sys
import time
from datetime import timedelta
from typing import IO, Any, NamedTuple

from dcctl.node.bench.allreduce import (
    BFLOAT16_MAX_RANKS,
    CORRUPT_RANK_ENV,
    DTYPES,
    MAX_ITERATIONS,
    PATTERN_PERIOD,
    BadParams,
    RankDoc,
    SizeRow,
    alg_bandwidth,
    bus_bandwidth,
    expected_period,
    pattern_period,
    sweep_sizes,
    worker_params,
)
from dcctl.node.bench.rank import GANG_JOB_ENV, cuda_device, leave, run_rank
from dcctl.node.payload import format_progress

# Verification compares this many elements at a time, so its temporaries stay small beside an
# 8 GiB buffer.
CHUNK_ELEMENTS = 1 << 26
# Left free on each GPU beside the buffer: NCCL's own buffers, the CUDA context, verification.
MIN_HEADROOM_BYTES = 2 * 1024**3
HEADROOM_FRACTION = 0.1
# With gloo each rank holds its buffer plus gloo's working copies in host memory.
CPU_COPIES_PER_RANK = 3


class Ranks(NamedTuple):
    """This process's place in the job and the torch objects every step uses."""

    torch: Any
    dist: Any
    device: Any
    dtype: Any
    rank: int
    world: int
    # Seconds this rank waits before each timed collective: an injected slow link (faults).
    delay_s: float = 0.0

    def reduce(self, buffer: Any) -> None:
        """One timed allreduce, after the injected link delay, if any."""
        if self.delay_s:
            time.sleep(self.delay_s)
        self.dist.all_reduce(buffer)

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def align(self) -> None:
        """Every rank past the same point (nccl-tests' barrier before timing)."""
        self.dist.all_reduce(self.torch.ones(1, device=self.device))
        self.sync()

    def agree(self, value: float, op: str, integer: bool = False) -> float:
        """`value` reduced over ranks with op "max", "min" or "sum"."""
        dtype = self.torch.int64 if integer else self.torch.float64
        tensor = self.torch.tensor([value], dtype=dtype, device=self.device)
        self.dist.all_reduce(tensor, op=getattr(self.dist.ReduceOp, op.upper()))
        return float(tensor.item())


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    if value is None or not value.strip().lstrip("-").isdigit():
        raise RuntimeError(f"{name} is {value!r}: the worker runs under torchrun")
    return int(value)


# --- setup ---------------------------------------------------------------------------------


def _device(torch: Any, kind: str, local_rank: int) -> Any:
    if kind == "cpu":
        return torch.device("cpu")
    return cuda_device(torch, local_rank)


def _start(params: dict[str, Any], rank: int) -> Ranks:
    import torch
    import torch.distributed as dist

    world = _env_int("WORLD_SIZE")
    if params["dtype"] == "bfloat16" and world > BFLOAT16_MAX_RANKS:
        raise BadParams(f"bfloat16 sums are exact up to {BFLOAT16_MAX_RANKS} ranks, not {world}")
    device = _device(torch, params["device"], _env_int("LOCAL_RANK"))
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=params["init_timeout_s"])
    dist.init_process_group(backend, timeout=timeout, rank=rank, world_size=world)
    ranks = Ranks(torch, dist, device, getattr(torch, params["dtype"]), rank, world,
                  _link_delay_s(params["fault"]))  # fmt: skip
    # The first collective: every rank has joined and NCCL has built its communicator, so the
    # free memory read next already counts NCCL's buffers.
    ranks.align()
    return ranks


def _link_delay_s(fault: dict[str, Any] | None) -> float:
    """A slow-link fault reaches only the node it names, so it slows every rank here."""
    if fault is None or fault.get("kind") != "slow-link":
        return 0.0
    return float(fault.get("ms") or 0.0) / 1000.0


def _dies_at(fault: dict[str, Any] | None, rank: int) -> int | None:
    """The sweep step (1-based) at which an injected `die` fault kills this rank."""
    if fault is None or fault.get("kind") != "die" or fault.get("rank") != rank:
        return None
    step = fault.get("step")
    return step if isinstance(step, int) else 1


def _say_joined(progress: IO[str]) -> None:
    """One line per node once its ranks are in the job: a gang's controller waits for it."""
    if os.environ.get(GANG_JOB_ENV) == "1" and os.environ.get("LOCAL_RANK") == "0":
        node = int(os.environ["GROUP_RANK"])
        progress.write(format_progress({"phase": "joined", "node_rank": node}))
        progress.flush()


def _host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _memory_cap(ranks: Ranks) -> float:
    """The largest buffer this rank can hold with headroom, in bytes (inf when unknown)."""
    if ranks.device.type == "cuda":
        free, total = ranks.torch.cuda.mem_get_info(ranks.device)
        return float(max(0, free - max(MIN_HEADROOM_BYTES, int(total * HEADROOM_FRACTION))))
    available = _host_available_bytes()
    if available is None:
        return math.inf
    return float(available // (ranks.world * CPU_COPIES_PER_RANK))


def _sizes(ranks: Ranks, params: dict[str, Any]) -> list[int]:
    """The sweep, cut where the smallest memory cap of any rank ends it."""
    wanted = sweep_sizes(params["min_bytes"], params["max_bytes"], params["factor"])
    cap = ranks.agree(min(_memory_cap(ranks), float(wanted[-1])), "min")
    sizes = [size for size in wanted if size <= cap]
    if not sizes:
        raise RuntimeError(
            f"not enough free memory for even {wanted[0]} bytes: {int(cap)} usable on the "
            f"tightest rank"
        )
    return sizes


# --- one size ------------------------------------------------------------------------------


def _fill(buffer: Any, period: Any) -> None:
    rows = buffer.numel() // PATTERN_PERIOD
    if rows:
        body = buffer[: rows * PATTERN_PERIOD].view(rows, PATTERN_PERIOD)
        body.copy_(period.expand(rows, PATTERN_PERIOD))
    tail = buffer[rows * PATTERN_PERIOD :]
    tail.copy_(period[: tail.numel()])


def _count_wrong(ranks: Ranks, buffer: Any, expected: Any) -> int:
    rows = buffer.numel() // PATTERN_PERIOD
    body = buffer[: rows * PATTERN_PERIOD].view(rows, PATTERN_PERIOD)
    wrong = ranks.torch.zeros((), dtype=ranks.torch.int64, device=ranks.device)
    step = max(1, CHUNK_ELEMENTS // PATTERN_PERIOD)
    for start in range(0, rows, step):
        # NaN differs from everything, so a NaN in the result counts as wrong too.
        wrong += (body[start : start + step] != expected).sum()
    tail = buffer[rows * PATTERN_PERIOD :]
    wrong += (tail != expected[: tail.numel()]).sum()
    return int(wrong.item())


def _timed_count(ranks: Ranks, buffer: Any, params: dict[str, Any]) -> int:
    """Run the warm-up; the timed count, the same on every rank."""
    ranks.sync()
    start = time.perf_counter()
    for _ in range(params["warmup"]):
        ranks.reduce(buffer)
    ranks.sync()
    pace = (time.perf_counter() - start) / params["warmup"] if params["warmup"] else 0.0
    wanted = math.ceil(params["min_time_s"] / pace) if pace > 0 else 0
    count = min(MAX_ITERATIONS, max(params["iterations"], wanted))
    return int(ranks.agree(count, "max", integer=True))


def _time_batch(ranks: Ranks, buffer: Any, iterations: int) -> float:
    """Seconds per operation: this rank's mean over the batch, then the slowest rank's."""
    ranks.align()
    start = time.perf_counter()
    for _ in range(iterations):
        ranks.reduce(buffer)
    ranks.sync()
    return ranks.agree((time.perf_counter() - start) / iterations, "max")


def _verify(ranks: Ranks, buffer: Any, period: Any, expected: Any, corrupt: bool) -> int:
    """This rank's wrong elements after one allreduce of the known pattern."""
    _fill(buffer, period)
    if corrupt:
        buffer[buffer.numel() // 2] += 1
    ranks.dist.all_reduce(buffer)
    return _count_wrong(ranks, buffer, expected)


# --- the sweep -----------------------------------------------------------------------------


def _corrupt_rank() -> int | None:
    value = os.environ.get(CORRUPT_RANK_ENV)
    return None if value is None else int(value)


def _versions(ranks: Ranks) -> dict[str, str | None]:
    nccl = None
    if ranks.device.type == "cuda":
        found = ranks.torch.cuda.nccl.version()
        nccl = ".".join(map(str, found)) if isinstance(found, tuple) else str(found)
    return {"torch": str(ranks.torch.__version__), "nccl": nccl}


def _sweep(ranks: Ranks, params: dict[str, Any], progress: IO[str]) -> tuple[list[SizeRow], int]:
    """Every size measured and verified; the rows and this rank's wrong elements in all."""
    sizes = _sizes(ranks, params)
    element = DTYPES[params["dtype"]]
    whole = ranks.torch.empty(sizes[-1] // element, dtype=ranks.dtype, device=ranks.device)
    period = ranks.torch.tensor(pattern_period(ranks.rank), dtype=ranks.dtype, device=ranks.device)
    expected = ranks.torch.tensor(
        expected_period(ranks.world), dtype=ranks.dtype, device=ranks.device
    )
    corrupt = _corrupt_rank() == ranks.rank
    dies_at = _dies_at(params["fault"], ranks.rank)
    rows: list[SizeRow] = []
    wrong_local = 0
    for step, size in enumerate(sizes, start=1):
        if step == dies_at:
            os.kill(os.getpid(), signal.SIGKILL)
        count = size // element
        buffer = whole[:count]
        _fill(buffer, period)
        iterations = _timed_count(ranks, buffer, params)
        seconds = _time_batch(ranks, buffer, iterations)
        mine = _verify(ranks, buffer, period, expected, corrupt)
        wrong_local += mine
        algbw = alg_bandwidth(count * element, seconds)
        rows.append(
            {
                "bytes": count * element,
                "count": count,
                "iterations": iterations,
                "time_us": seconds * 1e6,
                "algbw_gbs": algbw,
                "busbw_gbs": bus_bandwidth(algbw, ranks.world),
                "wrong": int(ranks.agree(mine, "sum", integer=True)),
            }
        )
        if ranks.rank == 0:
            report = {"bench": "allreduce", "bytes": count * element, "step": step}
            progress.write(format_progress({**report, "of": len(sizes)}))
            progress.flush()
    return rows, wrong_local


def _doc(ranks: Ranks, params: dict[str, Any], rows: list[SizeRow], wrong_local: int) -> RankDoc:
    wrong_total = sum(row["wrong"] for row in rows)
    place: RankDoc = {
        "local_rank": _env_int("LOCAL_RANK"),
        "node_rank": int(os.environ.get("GROUP_RANK", "0")),
        "hostname": socket.gethostname(),
    }
    if ranks.rank != 0:
        return {**place, "rank": ranks.rank, "wrong_total": wrong_total,
                "wrong_local": wrong_local}  # fmt: skip
    return {
        **place,
        "rank": 0,
        "world_size": ranks.world,
        "backend": ranks.dist.get_backend(),
        "device": params["device"],
        "dtype": params["dtype"],
        "in_place": True,
        "max_bytes": rows[-1]["bytes"],
        "sizes": rows,
        "versions": _versions(ranks),
        "wrong_total": wrong_total,
        "wrong_local": wrong_local,
    }


def _run(params: dict[str, Any], rank: int, progress: IO[str]) -> RankDoc:
    ranks = _start(params, rank)
    _say_joined(progress)
    rows, wrong_local = _sweep(ranks, params, progress)
    doc = _doc(ranks, params, rows, wrong_local)
    ranks.dist.destroy_process_group()
    return doc


# --- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run this rank; 0 when its document holds results, 1 when it holds an error."""
    args = sys.argv[1:] if argv is None else argv
    return run_rank("allreduce worker", args, lambda: _env_int("RANK"), worker_params, _run)


if __name__ == "__main__":
    leave(main())
