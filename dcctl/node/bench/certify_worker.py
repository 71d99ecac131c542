"""Certify worker: one process per GPU (NCCL), or per CPU rank (gloo), under torchrun, started
by the gang task on every node as

    PYTHONPATH=<runtime root> python -m torch.distributed.run --nnodes N --node-rank i \\
        --nproc-per-node P ... -m dcctl.node.bench.certify_worker '<json params>'

Params are read by dcctl.node.bench.certify.worker_params (which also describes the task and
the defaults). Each rank writes `out_dir/rank-<RANK>.json` (tmp file + rename); a rank that
fails writes `{"rank": r, "error": "Type: message"}` and exits 1; torchrun then stops the others.

What one rank does:
- joins the process group with one allreduce; LOCAL_RANK 0 of each node then prints the
  `joined` progress line the controller's join timeout waits for;
- builds the reference model from the seed (identical on every rank; DDP broadcasts rank 0's
  anyway): an input projection, `layers` pre-LayerNorm residual blocks of two hidden x hidden
  linears with a GELU between, a final LayerNorm and a zero-initialized head, so the first loss
  is the targets' variance, ~1. fp32 weights; with dtype bf16 the forward runs under autocast
  (fp32 master weights, gradients and AdamW state);
- trains it `steps` steps under DistributedDataParallel with AdamW and the warm-up + cosine
  schedule of certify.lr_at; each step's batch comes from a generator seeded by
  certify.batch_seed(seed, rank, step) on the device, its targets from the teacher;
- times every step: step_s from the batch's generation to the end of the optimizer step (device
  synchronized), local_s from the same start to the end of the forward pass and loss, before
  the backward pass and DDP's gradient allreduce, so it holds only this rank's own work: a slow
  rank shows in its local_s, while every rank's step_s grows alike (the others wait for it in
  the allreduce). The first certify.timing_skip(steps) steps are left out of both;
- checksums all parameters at every `checksum_every` steps and the last: each fp32 parameter's
  bits read as int32 and summed exactly in int64 on the device (any single bit flip changes
  that parameter's sum), the per-parameter sums then hashed (sha256, first 16 hex digits) so a
  change that moves between parameters shows too. Replicas must agree bitwise;
- replays: rebuilds model, optimizer and data from the seed, reruns the first `replay_steps`
  steps on every rank, and compares this rank's losses with the main run's bit for bit (as
  float32 bit patterns). Faults are not applied in the replay, as a transient fault would not
  recur;
- reduces its per-step losses to the global mean over ranks (one allreduce) and writes its
  document: rank, local_rank, node_rank, world_size, hostname, device, backend, gpu (index,
  name, uuid as NVML spells it, pci_bus_id; null on CPU), versions (torch, nccl, cuda), model
  (hidden, layers, in_dim, out_dim, params, dtype, batch_per_rank, flops_per_sample), seed,
  steps, loss_target, losses (this rank's, per step), global_losses, timing_warmup_steps,
  step_s and local_s ({p50, p99, mean} seconds), samples_per_s (this rank's, timed steps),
  checksums ([{step, value}]), replay ({steps, match, first_mismatch_step}), fault (the one
  this rank applied, or null).

Determinism: torch.use_deterministic_algorithms(True), CUBLAS_WORKSPACE_CONFIG=:4096:8 set
before CUDA starts, one thread per CPU rank. Non-finite losses are written as null (JSON has no
NaN).

Faults (DCCTL_FAULT, see faults.py), applied in the main run only:
- bitflip: after optimizer step S, rank R flips the top mantissa bit of the first weight of the
  first block: a silent corruption that never rounds away (the value changes by 1/4 to 1/2);
- slow: rank R sleeps M ms each step after generating its batch (inside local_s);
- die: rank R sends itself SIGKILL at the start of step S (no document, no cleanup);
- slow-link: every rank that received it sleeps M ms before each backward pass (outside
  local_s: a slow network, not a slow GPU).

Only global rank 0 writes `certify` progress lines, and LOCAL_RANK 0 the `joined` line; fd 1 is
pointed at stderr at start (dcctl.node.bench.rank), so what NCCL, torch or a library prints
cannot reach the stream the launcher relays.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import signal
import socket
import sys
import time
from datetime import timedelta
from typing import IO, Any, NamedTuple

from dcctl.node.bench.certify import (
    CALIBRATION_SAMPLES,
    TEACHER_HIDDEN,
    WEIGHT_DECAY,
    batch_seed,
    checksum_steps,
    flops_per_sample,
    lr_at,
    progress_every,
    summary,
    timing_skip,
    worker_params,
)
from dcctl.node.bench.faults import for_rank
from dcctl.node.bench.gemm_worker import pci_bus_id
from dcctl.node.bench.rank import cuda_device, leave, run_rank
from dcctl.node.payload import format_progress

# fp32 bit 22: the top mantissa bit. A flip scales the weight by 2/3 to 3/4 or by 5/4 to 3/2,
# so no later update rounds the replicas back together, and the exponent stays (no inf, NaN).
BITFLIP_BIT = 22
CHECKSUM_HEX_DIGITS = 16


class Job(NamedTuple):
    """This process's place in the job and the torch objects every step uses."""

    torch: Any
    dist: Any
    device: Any
    rank: int
    world: int
    local_rank: int
    node_rank: int

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)


class Trained(NamedTuple):
    """One training run's record, on the host."""

    params: int
    losses: list[float]
    step_s: list[float]
    local_s: list[float]
    checksums: list[dict[str, Any]]


class Teacher(NamedTuple):
    """y = tanh(x @ w1) @ w2 + b, normalized to zero mean and unit variance per output."""

    w1: Any
    w2: Any
    b: Any


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None and default is not None:
        return default
    if value is None or not value.strip().lstrip("-").isdigit():
        raise RuntimeError(f"{name} is {value!r}: the worker runs under torchrun")
    return int(value)


# --- setup ---------------------------------------------------------------------------------


def _device(torch: Any, kind: str, local_rank: int) -> Any:
    if kind == "cpu":
        # One thread per rank: ranks share the host's cores, and a fixed thread count keeps
        # CPU reductions in one order.
        torch.set_num_threads(1)
        return torch.device("cpu")
    return cuda_device(torch, local_rank)


def _start(params: dict[str, Any], rank: int, progress: IO[str]) -> Job:
    # cuBLAS reads this when it starts (the first product): deterministic workspaces.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch
    import torch.distributed as dist

    torch.use_deterministic_algorithms(True)
    world = _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK")
    device = _device(torch, params["device"], local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=params["init_timeout_s"])
    dist.init_process_group(backend, timeout=timeout, rank=rank, world_size=world)
    job = Job(torch, dist, device, rank, world, local_rank, _env_int("GROUP_RANK", 0))
    # The first collective: every rank has joined and the communicator is built.
    dist.all_reduce(torch.ones(1, device=device))
    job.sync()
    if local_rank == 0:
        progress.write(format_progress({"phase": "joined", "node_rank": job.node_rank}))
        progress.flush()
    return job


def _teacher(job: Job, params: dict[str, Any]) -> Teacher:
    """Drawn and normalized on the CPU in float64 from the seed, then cast, so every rank and
    device gets the same float32 teacher."""
    torch = job.torch
    generator = torch.Generator().manual_seed(batch_seed(params["seed"], 0, 0))
    in_dim, out_dim = params["in_dim"], params["out_dim"]
    f64 = torch.float64
    w1 = torch.randn((in_dim, TEACHER_HIDDEN), generator=generator, dtype=f64) / math.sqrt(in_dim)
    w2 = torch.randn((TEACHER_HIDDEN, out_dim), generator=generator, dtype=f64)
    x = torch.randn((CALIBRATION_SAMPLES, in_dim), generator=generator, dtype=f64)
    y = torch.tanh(x @ w1) @ w2
    mean, std = y.mean(dim=0), y.std(dim=0)
    return Teacher(
        w1.to(torch.float32).to(job.device),
        (w2 / std).to(torch.float32).to(job.device),
        (-mean / std).to(torch.float32).to(job.device),
    )


def _batch(job: Job, teacher: Teacher, params: dict[str, Any], step: int) -> tuple[Any, Any]:
    torch = job.torch
    generator = torch.Generator(device=job.device)
    generator.manual_seed(batch_seed(params["seed"], job.rank, step))
    x = torch.randn((params["batch"], params["in_dim"]), generator=generator, device=job.device)
    return x, torch.tanh(x @ teacher.w1) @ teacher.w2 + teacher.b


def _model(job: Job, params: dict[str, Any]) -> Any:
    torch = job.torch
    nn = torch.nn
    hidden, device = params["hidden"], job.device
    module: Any = nn.Module

    class Block(module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(hidden, device=device)
            self.up = nn.Linear(hidden, hidden, device=device)
            self.down = nn.Linear(hidden, hidden, device=device)

        def forward(self, x: Any) -> Any:
            return x + self.down(nn.functional.gelu(self.up(self.norm(x))))

    torch.manual_seed(params["seed"])
    head = nn.Linear(hidden, params["out_dim"], device=device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return nn.Sequential(
        nn.Linear(params["in_dim"], hidden, device=device),
        *[Block() for _ in range(params["layers"])],
        nn.LayerNorm(hidden, device=device),
        head,
    )


def _bitflip_target(model: Any) -> Any:
    """The first block's first weight matrix (the model's input projection when no blocks)."""
    return model[1].up.weight if len(model) > 3 else model[0].weight


def _flip_bit(job: Job, model: Any) -> None:
    with job.torch.no_grad():
        bits = _bitflip_target(model).detach().view(-1)[:1].view(job.torch.int32)
        bits.bitwise_xor_(1 << BITFLIP_BIT)


def checksum(job: Job, model: Any) -> str:
    """The parameters' bits: per parameter, its int32 views summed exactly in int64 on the
    device; those sums hashed."""
    torch = job.torch
    with torch.no_grad():
        sums = [p.detach().view(torch.int32).sum(dtype=torch.int64) for p in model.parameters()]
        values = torch.stack(sums).cpu().tolist()
    digest = hashlib.sha256(",".join(map(str, values)).encode("ascii")).hexdigest()
    return digest[:CHECKSUM_HEX_DIGITS]


# --- training ------------------------------------------------------------------------------


class Run(NamedTuple):
    """What one training run does beyond the steps: faults, checksums, progress."""

    steps: int
    fault: dict[str, Any] | None
    checksum_at: frozenset[int]
    progress: IO[str] | None


def _sleep_ms(ms: float) -> None:
    time.sleep(ms / 1000.0)


def _report(job: Job, run: Run, step: int, loss: Any, recent: list[float], batch: int) -> None:
    if run.progress is None or job.rank != 0:
        return
    if step % progress_every(run.steps) and step != run.steps:
        return
    value = float(loss.item())
    pace = sum(recent) / len(recent) if recent else 0.0
    report = {
        "phase": "certify",
        "step": step,
        "of": run.steps,
        "loss": value if math.isfinite(value) else None,
        "samples_per_s": batch * job.world / pace if pace > 0 else None,
    }
    run.progress.write(format_progress(report))
    run.progress.flush()


def _train(job: Job, params: dict[str, Any], teacher: Teacher, run: Run) -> Trained:
    torch = job.torch
    model = _model(job, params)
    ddp_args: dict[str, Any] = {"broadcast_buffers": False, "gradient_as_bucket_view": True}
    if job.device.type == "cuda":
        ddp_args.update(device_ids=[job.device.index], output_device=job.device.index)
    ddp = torch.nn.parallel.DistributedDataParallel(model, **ddp_args)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=WEIGHT_DECAY)
    autocast = params["dtype"] == "bf16"
    fault = run.fault or {}
    kind = fault.get("kind")
    losses = torch.zeros(run.steps, dtype=torch.float32, device=job.device)
    step_s: list[float] = []
    local_s: list[float] = []
    checksums: list[dict[str, Any]] = []
    for step in range(1, run.steps + 1):
        if kind == "die" and step == fault["step"]:
            os.kill(os.getpid(), signal.SIGKILL)
        began = time.perf_counter()
        x, y = _batch(job, teacher, params, step)
        if kind == "slow":
            _sleep_ms(fault["ms"])
        with torch.autocast(job.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = ddp(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        job.sync()
        local_s.append(time.perf_counter() - began)
        if kind == "slow-link":
            _sleep_ms(fault["ms"])
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, params["lr"], params["warmup_steps"], params["steps"])
        optimizer.step()
        if kind == "bitflip" and step == fault["step"]:
            _flip_bit(job, model)
        optimizer.zero_grad(set_to_none=True)
        job.sync()
        step_s.append(time.perf_counter() - began)
        losses[step - 1] = loss.detach()
        if step in run.checksum_at:
            checksums.append({"step": step, "value": checksum(job, model)})
        _report(job, run, step, loss, step_s[-progress_every(run.steps) :], params["batch"])
    count = sum(int(p.numel()) for p in model.parameters())
    return Trained(count, losses.cpu().tolist(), step_s, local_s, checksums)


def _release(job: Job) -> None:
    """The main run's model and optimizer gone before the replay builds its own."""
    gc.collect()
    if job.device.type == "cuda":
        job.torch.cuda.empty_cache()


def _bits(torch: Any, values: list[float]) -> list[int]:
    return [int(v) for v in torch.tensor(values, dtype=torch.float32).view(torch.int32).tolist()]


def _replay(job: Job, params: dict[str, Any], teacher: Teacher, main: Trained) -> dict[str, Any]:
    steps = params["replay_steps"]
    if steps == 0:
        return {"steps": 0, "match": True, "first_mismatch_step": None}
    run = Run(steps, None, frozenset(), None)
    again = _train(job, params, teacher, run)
    theirs, ours = _bits(job.torch, main.losses[:steps]), _bits(job.torch, again.losses)
    mismatch = next((i + 1 for i in range(steps) if theirs[i] != ours[i]), None)
    return {"steps": steps, "match": mismatch is None, "first_mismatch_step": mismatch}


def _global_losses(job: Job, losses: list[float]) -> list[float]:
    """Each step's loss averaged over ranks, summed in float64."""
    torch = job.torch
    total = torch.tensor(losses, dtype=torch.float64, device=job.device)
    job.dist.all_reduce(total)
    return [value / job.world for value in total.cpu().tolist()]


# --- the document --------------------------------------------------------------------------


def _finite(values: list[float]) -> list[float | None]:
    return [value if math.isfinite(value) else None for value in values]


def _gpu(job: Job) -> dict[str, Any] | None:
    if job.device.type != "cuda":
        return None
    properties = job.torch.cuda.get_device_properties(job.device)
    uuid = getattr(properties, "uuid", None)
    text = None if uuid is None else str(uuid)
    # NVML (and so the node's GPU inventory) spells it GPU-<uuid>; torch leaves the prefix off.
    if text is not None and not text.startswith("GPU-"):
        text = f"GPU-{text}"
    return {
        "index": job.device.index,
        "name": str(properties.name),
        "uuid": text,
        "pci_bus_id": pci_bus_id(properties),
    }


def _versions(job: Job) -> dict[str, str | None]:
    torch = job.torch
    nccl = None
    if job.device.type == "cuda":
        found = torch.cuda.nccl.version()
        nccl = ".".join(map(str, found)) if isinstance(found, tuple) else str(found)
    cuda = torch.version.cuda
    return {"torch": str(torch.__version__), "nccl": nccl, "cuda": None if cuda is None else cuda}


def _model_doc(params: dict[str, Any], count: int) -> dict[str, Any]:
    dims = (params["hidden"], params["layers"], params["in_dim"], params["out_dim"])
    return {
        "hidden": params["hidden"],
        "layers": params["layers"],
        "in_dim": params["in_dim"],
        "out_dim": params["out_dim"],
        "params": count,
        "dtype": params["dtype"],
        "batch_per_rank": params["batch"],
        "flops_per_sample": flops_per_sample(*dims),
    }


def _check_fault_rank(job: Job, fault: dict[str, Any] | None) -> None:
    """Every rank refuses a fault for a rank the job does not have: it would do nothing."""
    target = (fault or {}).get("rank")
    if target is not None and target >= job.world:
        raise ValueError(f"fault names rank {target}, but the job has {job.world} ranks")


def _run(params: dict[str, Any], rank: int, progress: IO[str]) -> dict[str, Any]:
    job = _start(params, rank, progress)
    _check_fault_rank(job, params["fault"])
    teacher = _teacher(job, params)
    fault = for_rank(params["fault"], rank)
    marks = frozenset(checksum_steps(params["steps"], params["checksum_every"]))
    main = _train(job, params, teacher, Run(params["steps"], fault, marks, progress))
    _release(job)
    replay = _replay(job, params, teacher, main)
    global_losses = _global_losses(job, main.losses)
    skip = timing_skip(params["steps"])
    timed_step, timed_local = main.step_s[skip:], main.local_s[skip:]
    doc = {
        "rank": rank,
        "local_rank": job.local_rank,
        "node_rank": job.node_rank,
        "world_size": job.world,
        "hostname": socket.gethostname(),
        "device": job.device.type,
        "backend": str(job.dist.get_backend()),
        "gpu": _gpu(job),
        "versions": _versions(job),
        "model": _model_doc(params, main.params),
        "seed": params["seed"],
        "steps": params["steps"],
        "loss_target": params["loss_target"],
        "losses": _finite(main.losses),
        "global_losses": _finite(global_losses),
        "timing_warmup_steps": skip,
        "step_s": summary(timed_step),
        "local_s": summary(timed_local),
        "samples_per_s": params["batch"] * len(timed_step) / sum(timed_step),
        "checksums": main.checksums,
        "replay": replay,
        "fault": fault,
    }
    job.dist.destroy_process_group()
    return doc


# --- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run this rank; 0 when its document holds results, 1 when it holds an error."""
    args = sys.argv[1:] if argv is None else argv
    return run_rank("certify worker", args, lambda: _env_int("RANK"), worker_params, _run)


if __name__ == "__main__":
    leave(main())
