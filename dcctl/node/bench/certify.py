"""Cluster certification by training: the parameters, defaults and arithmetic of the worker.

Every rank of a gang job trains the same reference model under DistributedDataParallel on a
synthetic task (certify_worker has the model and the steps). A cluster is certified when the
loss falls below `loss_target`, every replica's parameters stay bitwise identical, a replay of
the first steps gives bitwise the same losses, and no rank straggles.

The task, the same on every device and at every size: inputs x ~ N(0, I) of `in_dim`; targets
from a fixed random teacher y = tanh(x W1 / sqrt(in_dim)) W2 with TEACHER_HIDDEN hidden units,
then shifted and scaled per output to zero mean and unit variance (measured on
CALIBRATION_SAMPLES inputs from the seed), so the mean squared error of a model that outputs 0
(the student's head starts at zero) is ~1 and `loss_target` means the same on every device.

The launcher, the controller and the torch worker import this module: standard library only,
Python 3.8 syntax.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from dcctl.node.bench.faults import BadFault, check_fault

WORKER_MODULE = "dcctl.node.bench.certify_worker"
DEVICES = ("cuda", "cpu")
DTYPES = ("bf16", "fp32")

# --- the task (fixed: changing these changes what loss_target means) -----------------------

# Width of the teacher's hidden layer: a smooth function the student can learn well in a few
# hundred steps at CPU scale, but not in a handful (see the CPU calibration below).
TEACHER_HIDDEN = 64
# Samples drawn once, from the seed, to measure the teacher's output mean and spread.
CALIBRATION_SAMPLES = 16384
# The cosine schedule ends at this fraction of `lr`, not 0: the last steps still learn.
MIN_LR_RATIO = 0.1
# AdamW's decoupled weight decay. Small: the targets carry no noise to regularize against;
# it only keeps the weights from drifting over a long run.
WEIGHT_DECAY = 0.01
# Steps left out of the timing (step_s, local_s, samples_per_s): the first steps build DDP's
# buckets (rebuilt after step 1), warm the allocator, autocast's weight cache and cuBLAS's
# heuristics, and would otherwise be read as a straggler.
TIMING_WARMUP_STEPS = 5
# About this many progress lines per run, from global rank 0.
PROGRESS_LINES = 50

# --- defaults ------------------------------------------------------------------------------

# Shared by every device: the task's shape and the run's controls.
_COMMON: dict[str, Any] = {
    "in_dim": 32,
    "out_dim": 8,
    "seed": 1,
    # Also bounds every collective after the join (torch applies it to each operation), so it
    # must exceed the slowest step on a sick node, not only the rendezvous.
    "init_timeout_s": 300.0,
    "fault": None,
}

# CPU (gloo, one thread per rank): small enough that a 2-rank `--quick` run trains in a few
# seconds on a 2-core machine, big enough that the task is not learned in the first steps.
# Calibrated on a 2-core AMD EPYC VM (KVM), torch 2.13 CPU, 2 ranks under torchrun: the mean of
# the last 5 global losses of a quick run was 0.072, 0.065 and 0.083 for seeds 1, 2 and 3
# (step p50 ~16 ms, the whole torchrun ~11 s). loss_target sits ~2x above the worst of them,
# and below the loss of the first 15% of the steps, so a run that learns nothing (or diverges,
# or whose replicas drift apart) stays above it. The quick model is half as wide as the full
# one (4x fewer weights to allreduce) and sees twice the batch: on shared cores the gradient
# allreduce, not the arithmetic, is most of a step.
_CPU_QUICK: dict[str, Any] = {
    "device": "cpu",
    "dtype": "fp32",
    "hidden": 128,
    "layers": 4,
    "batch": 128,
    "steps": 100,
    "lr": 4e-3,
    "warmup_steps": 10,
    "checksum_every": 20,
    "replay_steps": 10,
    "loss_target": 0.15,
}
# The full CPU run: width 256, batch 64, lr 2e-3 for 1000 steps; the mean of the last 10
# global losses was 0.015 and 0.0074 for seeds 1 and 2, so 0.05 is 3.4x above the worse.
_CPU_FULL: dict[str, Any] = {
    **_CPU_QUICK,
    "hidden": 256,
    "batch": 64,
    "lr": 2e-3,
    "steps": 1000,
    "warmup_steps": 50,
    "checksum_every": 50,
    "replay_steps": 50,
    "loss_target": 0.05,
}

# CUDA: sized to keep an H100 busy; NOT verified on a GPU (chosen without one). 8 residual
# blocks of two 8192x8192 linears: 1.07e9 weights, 6.4 GFLOP per sample; a batch of 8192 per
# rank is ~53 TFLOP per step, ~90 ms at 600 TFLOP/s of bf16, enough to hide the 4.3 GB fp32
# gradient allreduce behind the backward pass on NVLink (and to show it where it does not
# hide, across nodes). Memory per GPU: fp32 weights, gradients and two AdamW moments ~17 GB,
# the bf16 weight copies autocast caches ~2 GB, activations ~6 GB: fits 40 GB parts. Expected
# ~20 s for the 200 quick steps and ~100 s for the full 1000 on one node; longer where the
# allreduce crosses nodes and no longer hides.
# Steps, warm-up and loss_target are the CPU's, so the CPU calibration carries over: the task
# is the same, the model far wider and each step sees >= 128x the CPU's samples, which only
# lowers the loss reached. lr: under Adam a weight matrix's update moves its outputs by about
# lr * fan_in, so lr scales as 1/width. Checked on CPU (one process, 100 steps, 8 layers,
# fp32, batch 128 at width 2048 and 256 at 1024; mean of the last 10 losses): width 2048 ends
# at 0.086 / 0.073 / 0.074 with lr 1e-4 / 4e-4 / 1e-3, width 1024 at 0.093 / 0.065 with
# 1e-4 / 4e-4. So 1e-4 at width 8192 (2048's 4e-4 scaled) sits in a flat, stable range with
# room either side. bf16 autocast ends where fp32 does (width 256: 0.0612 vs 0.0616).
_CUDA_QUICK: dict[str, Any] = {
    **_CPU_QUICK,
    "device": "cuda",
    "dtype": "bf16",
    "hidden": 8192,
    "layers": 8,
    "batch": 8192,
    "lr": 1e-4,
}
_CUDA_FULL: dict[str, Any] = {
    **_CPU_FULL,
    **{key: _CUDA_QUICK[key] for key in ("device", "dtype", "hidden", "layers", "batch", "lr")},
}
_DEFAULTS = {
    ("cpu", True): _CPU_QUICK,
    ("cpu", False): _CPU_FULL,
    ("cuda", True): _CUDA_QUICK,
    ("cuda", False): _CUDA_FULL,
}
KEYS = ("out_dir", *_COMMON, *_CPU_QUICK)


class BadParams(ValueError):
    """Worker parameters the certification cannot run with."""


def defaults(device: str, quick: bool) -> dict[str, Any]:
    """Every parameter but out_dir for `device` ("cuda" or "cpu"); `quick` is the short run."""
    if device not in DEVICES:
        raise BadParams(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    return {**_COMMON, **_DEFAULTS[(device, bool(quick))]}


# --- parameters ----------------------------------------------------------------------------


def _count(params: dict[str, Any], name: str, least: int) -> int:
    value = params[name]
    if type(value) is not int or value < least:
        raise BadParams(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def _positive(params: dict[str, Any], name: str) -> float:
    value = params[name]
    # bool is an int subclass; a YAML `yes` is not a learning rate.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadParams(f"{name} must be a number, got {value!r}")
    if not (0 < value < math.inf):
        raise BadParams(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _choice(params: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = params[name]
    if value not in allowed:
        raise BadParams(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def worker_params(raw: Any) -> dict[str, Any]:
    """The worker's parameters, each checked, the missing ones from defaults(device, False);
    BadParams names the first bad one."""
    if not isinstance(raw, dict):
        raise BadParams(f"params must be a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise BadParams(f"unknown params: {', '.join(map(str, unknown))}")
    if not isinstance(raw.get("out_dir"), str) or not raw["out_dir"]:
        raise BadParams(f"out_dir must be a directory path, got {raw.get('out_dir')!r}")
    device = _choice({"device": raw.get("device", "cuda")}, "device", DEVICES)
    params = {**defaults(device, False), **raw}
    checked: dict[str, Any] = {"out_dir": params["out_dir"], "device": device}
    checked["dtype"] = _choice(params, "dtype", DTYPES)
    for name in ("hidden", "layers", "in_dim", "out_dim", "batch", "steps", "checksum_every"):
        checked[name] = _count(params, name, 1)
    for name in ("warmup_steps", "replay_steps", "seed"):
        checked[name] = _count(params, name, 0)
    for name in ("lr", "init_timeout_s", "loss_target"):
        checked[name] = _positive(params, name)
    for name in ("warmup_steps", "replay_steps"):
        if name not in raw:
            # A default made for the default steps: a shorter run warms up and replays less.
            checked[name] = min(checked[name], checked["steps"])
        elif checked[name] > checked["steps"]:
            raise BadParams(f"{name} ({checked[name]}) exceeds steps ({checked['steps']})")
    try:
        checked["fault"] = check_fault(params["fault"])
    except BadFault as exc:
        raise BadParams(f"fault: {exc}") from None
    step = (checked["fault"] or {}).get("step")
    if step is not None and step > checked["steps"]:
        # It would never fire, and the run would look like a fault the cluster shrugged off.
        raise BadParams(f"fault: step {step} is after the last step ({checked['steps']})")
    return checked


# --- arithmetic the worker and the evaluators share ----------------------------------------


def lr_at(step: int, lr: float, warmup_steps: int, steps: int) -> float:
    """Learning rate for optimizer step `step` (1-based): linear warm-up to `lr` over
    `warmup_steps`, then a cosine down to MIN_LR_RATIO * lr at the last step."""
    if step <= warmup_steps:
        return lr * step / warmup_steps
    decay_steps = steps - warmup_steps
    progress = (step - warmup_steps) / decay_steps if decay_steps > 0 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return lr * (MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * cosine)


def matmul_weights(hidden: int, layers: int, in_dim: int, out_dim: int) -> int:
    """Weights in the model's linear layers: input projection, two hidden x hidden linears per
    residual block, output head (biases and LayerNorms not counted)."""
    return in_dim * hidden + layers * 2 * hidden * hidden + hidden * out_dim


def flops_per_sample(hidden: int, layers: int, in_dim: int, out_dim: int) -> float:
    """Training FLOPs per sample: 6 per matmul weight (2 in the forward product, 4 in the
    backward's two: the input's gradient and the weight's). Biases, LayerNorm, GELU, the loss
    and the optimizer are left out: under 0.1% at hidden 8192, under 2% at 256."""
    return 6.0 * matmul_weights(hidden, layers, in_dim, out_dim)


def batch_seed(seed: int, rank: int, step: int) -> int:
    """The generator seed of one rank's batch at one step (step 0: the teacher): different for
    every (rank, step) pair, the same on every run, host and device."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode("ascii"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


def timing_skip(steps: int) -> int:
    """Steps left out of the timing: TIMING_WARMUP_STEPS, but at most half of a short run."""
    return min(TIMING_WARMUP_STEPS, steps // 2)


def progress_every(steps: int) -> int:
    return max(1, steps // PROGRESS_LINES)


def checksum_steps(steps: int, every: int) -> list[int]:
    """Steps after which the parameters are checksummed: every `every`-th, and the last."""
    marks = list(range(every, steps + 1, every))
    return marks if marks and marks[-1] == steps else [*marks, steps]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between the closest ranks
    (numpy's default), of a non-empty list."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    """{"p50", "p99", "mean"} of a non-empty list of seconds."""
    return {
        "p50": percentile(values, 50.0),
        "p99": percentile(values, 99.0),
        "mean": sum(values) / len(values),
    }
