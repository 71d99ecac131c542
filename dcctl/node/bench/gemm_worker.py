"""GEMM worker: one process on CPU or one GPU, or one process per GPU under torchrun, started
by the GEMM launcher with the node's normal python (torch importable) as

    PYTHONPATH=<runtime root> python -m dcctl.node.bench.gemm_worker '<json params>'
    PYTHONPATH=<runtime root> python -m torch.distributed.run --standalone \\
        --nproc-per-node G -m dcctl.node.bench.gemm_worker '<json params>'

(dcctl.node.bench.gemm.gemm_worker_argv builds both). Each rank works alone: no process group.
Params are checked by dcctl.node.bench.gemm.worker_params. Each rank writes
`out_dir/rank-<RANK>.json` (tmp file + rename); a rank that fails writes
`{"rank": r, "error": "Type: message"}` and exits 1.

Per dtype:
- inputs: A (m x k) and B (k x n) drawn from a torch.Generator seeded with `seed` on the CPU, in
  fp32, then moved to the device and cast there, so every GPU multiplies identical values;
- `warmup` untimed products, then timed batches of products into one preallocated output, timed
  with CUDA events on a GPU (time.perf_counter on CPU); iterations per batch and the batch count
  are chosen from a probe so that the timed work lasts at least `min_time_s`, in at least
  MIN_BATCHES batches; TFLOP/s per batch = 2*m*n*k*iterations / t; reported: the median batch,
  and the slowest and fastest;
- checksum: sha256 of the result tensor's bytes;
- reference: the first REFERENCE_ROWS rows of the result against fp64 products of the same
  (already cast) inputs, as max|C - R| / max|R| (a max-norm relative error: element-wise
  relative error is meaningless for the elements near zero that any product has). Tolerances
  (TOLERANCES) sit several times above what correct hardware produces, so only a wrong result
  fails: the error of a correct GEMM is dominated by rounding the output (unit roundoff 2^-8 in
  bf16, 2^-11 in fp16) and by reduced-precision split-k reductions, which cuBLAS allows for
  bf16/fp16 by default; tf32 rounds the inputs to 10 mantissa bits (~3e-4 here). The fp32
  tolerance is below that, so an fp32 GEMM silently running in tf32 fails too. fp8 (e4m3
  inputs, bf16 output, fast accumulation) is the loosest.
- fp8 runs through torch._scaled_mm with unit scales on GPUs of compute capability 8.9 and up
  (Ada, Hopper, Blackwell); bf16 and tf32 need 8.0. On CPU only fp32 is measured: the other
  dtypes are reported as skipped with the reason.
- TF32 is switched on (torch.backends.cuda.matmul.allow_tf32) for tf32 only.

Soak (`duration_s`): after the dtypes, the first dtype that ran (bf16 on a GPU, fp32 on CPU, in
the launcher's default order) runs for `duration_s` more, with its throughput recorded per
window of `window_s` seconds and its result checksummed again at the end.

Progress lines (dcctl.node.payload.format_progress) are the only output on stdout: fd 1 is
pointed at stderr at start, so what torch or a library prints cannot reach the stream the
launcher relays; progress goes to a copy of the original stdout.

Test hook: with DCCTL_TEST_CORRUPT_RANK=<r> set, rank r flips the lowest bit of the first byte
of each result before checksumming it, so its checksums differ from every other rank's.
"""

from __future__ import annotations

import ctypes
import glob
import hashlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from dcctl.node.bench.gemm import (
    CORRUPT_RANK_ENV,
    DtypeResult,
    RankDoc,
    SoakDoc,
    SoakWindow,
    tflops,
    worker_params,
)
from dcctl.node.bench.rank import cuda_device, describe, run_rank
from dcctl.node.payload import format_progress
from dcctl.node.sysroot import sysroot_path

MIN_BATCHES = 5
# About this many batches fill min_time_s: enough for a median and a spread, and each batch
# long enough that a CUDA event's resolution (~0.5 us) and launch gaps are noise.
TARGET_BATCHES = 10
# The probe doubles its iterations until one batch lasts this long (or this share of
# min_time_s, when that is shorter).
PROBE_S = 0.05
REFERENCE_ROWS = 64
# The fp64 reference is computed on the CPU this many result columns at a time, so its
# temporaries stay small beside a 64k-wide B.
REFERENCE_COLUMNS = 2048
TOLERANCES = {"fp32": 1e-4, "tf32": 5e-3, "fp16": 5e-3, "bf16": 2e-2, "fp8": 5e-2}
MIN_COMPUTE_CAPABILITY = {"bf16": (8, 0), "tf32": (8, 0), "fp8": (8, 9)}

if TYPE_CHECKING:
    Op = Callable[[], Any]


# --- process -------------------------------------------------------------------------------


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value is None else int(value)


class Progress:
    """Progress lines for one rank, written whole and flushed so ranks never interleave."""

    def __init__(self, stream: IO[str], rank: int) -> None:
        self.stream = stream
        self.rank = rank

    def __call__(self, dtype: str, step: int, of: int, **extra: Any) -> None:
        report = {"bench": "gemm", "rank": self.rank, "dtype": dtype, "step": step, "of": of}
        self.stream.write(format_progress({**report, **extra}))
        self.stream.flush()


# --- device --------------------------------------------------------------------------------


def _cpu_name() -> str:
    try:
        with open(sysroot_path("/proc/cpuinfo"), encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model name") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def _bus_id_from_proc(uuid: str) -> str | None:
    """The PCI address the driver lists for a GPU UUID (/proc/driver/nvidia/gpus/<addr>/)."""
    wanted = uuid.lower().replace("gpu-", "")
    for path in glob.glob(sysroot_path("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path, encoding="utf-8", errors="replace") as info:
                text = info.read().lower()
        except OSError:
            continue
        if wanted and wanted in text:
            # The directory is named 0000:18:00.0; NVML writes the domain with 8 digits.
            domain, _, rest = os.path.basename(os.path.dirname(path)).partition(":")
            return f"{domain.zfill(8)}:{rest}".upper()
    return None


def pci_bus_id(properties: Any) -> str | None:
    """NVML's spelling (00000000:18:00.0): from torch where it has the PCI ids, else found by
    the GPU's UUID in the driver's /proc tree; None when neither says."""
    ids = [getattr(properties, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    if all(isinstance(part, int) for part in ids):
        return f"{ids[0]:08X}:{ids[1]:02X}:{ids[2]:02X}.0"
    uuid = getattr(properties, "uuid", None)
    return _bus_id_from_proc(str(uuid)) if uuid else None


def _device(torch: Any, kind: str, local_rank: int) -> tuple[Any, dict[str, Any]]:
    """The torch device and this rank's identity in the rank file."""
    if kind == "cpu":
        return torch.device("cpu"), {"device": "cpu", "name": _cpu_name(), "pci_bus_id": None}
    device = cuda_device(torch, local_rank)
    properties = torch.cuda.get_device_properties(local_rank)
    identity = {
        "device": f"cuda:{local_rank}",
        "name": str(properties.name),
        "pci_bus_id": pci_bus_id(properties),
    }
    return device, identity


def _skip_reason(torch: Any, dtype: str, device: Any, params: dict[str, Any]) -> str | None:
    if device.type == "cpu":
        return None if dtype == "fp32" else "on CPU only fp32 is measured"
    if dtype not in MIN_COMPUTE_CAPABILITY:
        return None
    needed = MIN_COMPUTE_CAPABILITY[dtype]
    have = tuple(torch.cuda.get_device_capability(device))
    if have < needed:
        return (
            f"{dtype} needs compute capability {needed[0]}.{needed[1]} or newer; "
            f"this GPU has {have[0]}.{have[1]}"
        )
    if dtype == "fp8":
        if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
            return f"torch {torch.__version__} has no fp8 matmul (torch._scaled_mm)"
        if any(params[dim] % 16 for dim in ("m", "n", "k")):
            return "fp8 matmul needs m, n and k divisible by 16"
    return None


def _sync(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- one dtype -----------------------------------------------------------------------------


class Gemm:
    """One dtype's operands on the device, the product as a callable, and its output."""

    def __init__(self, torch: Any, dtype: str, a32: Any, b32: Any) -> None:
        self.torch = torch
        self.dtype = dtype
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
        if dtype == "fp8":
            self.a = a32.to(torch.float8_e4m3fn)
            # _scaled_mm takes its second operand column-major.
            self.b = b32.t().contiguous().to(torch.float8_e4m3fn).t()
            self.scale = torch.ones((), dtype=torch.float32, device=a32.device)
            self.out = self._scaled()
            self.op: Op = self._fp8_op
        else:
            cast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype, torch.float32)
            self.a, self.b = a32.to(cast), b32.to(cast)
            self.out = torch.empty((a32.shape[0], b32.shape[1]), dtype=cast, device=a32.device)
            self.op = self._matmul_op

    def _matmul_op(self) -> None:
        self.torch.matmul(self.a, self.b, out=self.out)

    def _scaled(self) -> Any:
        kwargs = {"scale_a": self.scale, "scale_b": self.scale, "out_dtype": self.torch.bfloat16}
        out = self.torch._scaled_mm(self.a, self.b, use_fast_accum=True, **kwargs)
        # torch before 2.4 returns (out, amax).
        return out[0] if isinstance(out, tuple) else out

    def _fp8_op(self) -> None:
        self.out = self._scaled()

    def reference_error(self, rows: int) -> float | None:
        """max|C - R| / max|R| over the first rows; None when C holds inf or NaN."""
        torch = self.torch
        a = self.a[:rows].to(torch.float32).cpu().to(torch.float64)
        worst_err, worst_ref = 0.0, 0.0
        for start in range(0, self.b.shape[1], REFERENCE_COLUMNS):
            stop = start + REFERENCE_COLUMNS
            b = self.b[:, start:stop].to(torch.float32).cpu().to(torch.float64)
            reference = a @ b
            got = self.out[:rows, start:stop].to(torch.float64).cpu()
            if not bool(torch.isfinite(got).all()):
                return None
            worst_err = max(worst_err, float((got - reference).abs().max()))
            worst_ref = max(worst_ref, float(reference.abs().max()))
        return worst_err / worst_ref if worst_ref > 0 else worst_err


def _time_batches(torch: Any, device: Any, op: Op, iterations: int, batches: int) -> list[float]:
    """Seconds per batch of `iterations` products. On a GPU the batches are queued back to
    back and timed by events, with one synchronize at the end, so no host gap is timed."""
    if device.type == "cuda":
        marks = []
        for _ in range(batches):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(iterations):
                op()
            end.record()
            marks.append((start, end))
        torch.cuda.synchronize(device)
        return [start.elapsed_time(end) / 1000.0 for start, end in marks]
    times = []
    for _ in range(batches):
        began = time.perf_counter()
        for _ in range(iterations):
            op()
        times.append(time.perf_counter() - began)
    return times


def _calibrate(torch: Any, device: Any, op: Op, min_time_s: float) -> tuple[int, float]:
    """Products per batch so that about TARGET_BATCHES batches fill min_time_s, and the
    seconds one product took in the probe."""
    probe_s = min(PROBE_S, min_time_s / TARGET_BATCHES)
    count = 1
    while True:
        seconds = _time_batches(torch, device, op, count, 1)[0]
        if seconds >= probe_s or count >= 1 << 20:
            break
        count *= 2
    per_product = seconds / count
    if per_product <= 0:
        return count, 0.0
    return max(1, round(min_time_s / TARGET_BATCHES / per_product)), per_product


def _measure(torch: Any, device: Any, op: Op, params: dict[str, Any]) -> tuple[int, list[float]]:
    """Iterations per batch and every timed batch's seconds (at least min_time_s in all)."""
    for _ in range(params["warmup"]):
        op()
    _sync(torch, device)
    min_time_s = params["min_time_s"]
    iterations, per_product = _calibrate(torch, device, op, min_time_s)
    expected = iterations * per_product
    batches = max(MIN_BATCHES, math.ceil(min_time_s / expected)) if expected > 0 else MIN_BATCHES
    times = _time_batches(torch, device, op, iterations, batches)
    # Clocks and contention move the pace after the probe: top up until min_time_s is timed.
    while sum(times) < min_time_s:
        more = max(1, math.ceil((min_time_s - sum(times)) / (sum(times) / len(times))))
        times += _time_batches(torch, device, op, iterations, more)
    return iterations, times


def checksum(torch: Any, tensor: Any) -> str:
    """sha256 of the tensor's bytes, read in place: numpy may be absent on the node, and
    iterating a storage in Python takes minutes for an 8192^2 result."""
    host = tensor.detach().contiguous().cpu()
    size = host.numel() * host.element_size()
    view = (ctypes.c_char * size).from_address(host.data_ptr())
    return hashlib.sha256(memoryview(view)).hexdigest()


def _corrupt(torch: Any, tensor: Any) -> None:
    tensor.view(torch.uint8).view(-1)[:1].bitwise_xor_(1)


def _run_dtype(
    torch: Any, device: Any, dtype: str, inputs: tuple[Any, Any], params: dict[str, Any]
) -> tuple[DtypeResult, Gemm | None]:
    reason = _skip_reason(torch, dtype, device, params)
    if reason is not None:
        return {"dtype": dtype, "skipped": reason}, None
    try:
        gemm = Gemm(torch, dtype, *inputs)
    # fp8 support depends on how torch and cuBLAS were built for this GPU, beyond what the
    # capability check can tell; its first product is the probe, and the other dtypes still run.
    except RuntimeError as exc:
        if dtype != "fp8" or isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        return {"dtype": dtype, "skipped": f"torch._scaled_mm failed: {describe(exc)}"}, None
    iterations, times = _measure(torch, device, gemm.op, params)
    m, n, k = params["m"], params["n"], params["k"]
    figures = [tflops(m, n, k, iterations, t) for t in times]
    if _corrupt_rank() == _env_int("RANK", 0):
        _corrupt(torch, gemm.out)
    error = gemm.reference_error(min(m, REFERENCE_ROWS))
    result: DtypeResult = {
        "dtype": dtype,
        "m": m,
        "n": n,
        "k": k,
        "iterations": iterations * len(times),
        "times_ms": [t * 1000.0 for t in times],
        "tflops": statistics.median(figures),
        "tflops_min": min(figures),
        "tflops_max": max(figures),
        "checksum": checksum(torch, gemm.out),
        "ref_max_rel_err": error,
        "ref_ok": error is not None and error <= TOLERANCES[dtype],
        "tolerance": TOLERANCES[dtype],
    }
    return result, gemm


def _corrupt_rank() -> int | None:
    value = os.environ.get(CORRUPT_RANK_ENV)
    return None if value is None else int(value)


# --- soak ----------------------------------------------------------------------------------


def _soak(
    torch: Any, device: Any, gemm: Gemm, params: dict[str, Any], progress: Progress
) -> SoakDoc:
    """Throughput per window of window_s for duration_s, then the result's checksum."""
    m, n, k = params["m"], params["n"], params["k"]
    duration, window_s = params["duration_s"], params["window_s"]
    for _ in range(params["warmup"]):
        gemm.op()
    _sync(torch, device)
    iterations, _ = _calibrate(torch, device, gemm.op, min(window_s, duration))
    of = max(1, math.ceil(duration / window_s))
    windows: list[SoakWindow] = []
    began = time.perf_counter()
    while time.perf_counter() - began < duration:
        offset = time.perf_counter() - began
        length = min(window_s, duration - offset)
        busy, count = 0.0, 0
        while count == 0 or time.perf_counter() - began - offset < length:
            busy += _time_batches(torch, device, gemm.op, iterations, 1)[0]
            count += iterations
        windows.append({"t_s": offset, "tflops": tflops(m, n, k, count, busy)})
        progress(gemm.dtype, len(windows), of, phase="soak", tflops=windows[-1]["tflops"])
    if _corrupt_rank() == _env_int("RANK", 0):
        _corrupt(torch, gemm.out)
    digest = checksum(torch, gemm.out)
    return {"dtype": gemm.dtype, "window_s": window_s, "windows": windows, "checksum": digest}


# --- the rank ------------------------------------------------------------------------------


def _inputs(torch: Any, device: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(params["seed"])
    a = torch.randn((params["m"], params["k"]), generator=generator, dtype=torch.float32)
    b = torch.randn((params["k"], params["n"]), generator=generator, dtype=torch.float32)
    return a.to(device), b.to(device)


def _release(torch: Any, device: Any) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _run(params: dict[str, Any], rank: int, progress: Progress) -> RankDoc:
    import torch

    device, identity = _device(torch, params["device"], _env_int("LOCAL_RANK", 0))
    inputs = _inputs(torch, device, params)
    soaking = params["duration_s"] is not None
    of = len(params["dtypes"]) + (1 if soaking else 0)
    results: list[DtypeResult] = []
    soak_dtype = None
    for step, dtype in enumerate(params["dtypes"], start=1):
        progress(dtype, step, of)
        result, gemm = _run_dtype(torch, device, dtype, inputs, params)
        results.append(result)
        soak_dtype = soak_dtype or (dtype if gemm is not None else None)
        del gemm
        _release(torch, device)
    soak = None
    if soaking and soak_dtype is not None:
        progress(soak_dtype, of, of, phase="soak")
        soak = _soak(torch, device, Gemm(torch, soak_dtype, *inputs), params, progress)
    torch.backends.cuda.matmul.allow_tf32 = False
    return {
        "rank": rank,
        "device": identity["device"],
        "name": identity["name"],
        "pci_bus_id": identity["pci_bus_id"],
        "results": results,
        "soak": soak,
    }


# --- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run this rank; 0 when its document holds results, 1 when it holds an error."""
    args = sys.argv[1:] if argv is None else argv

    def work(params: dict[str, Any], rank: int, stream: IO[str]) -> RankDoc:
        return _run(params, rank, Progress(stream, rank))

    return run_rank("gemm worker", args, lambda: _env_int("RANK", 0), worker_params, work)


if __name__ == "__main__":
    sys.exit(main())
