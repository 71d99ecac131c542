"""Judges the GEMM benchmark section (what dcctl.node.bench.gemm.summarize_gemm builds).

Results, all of kind "bench"; a benchmark's figures travel in `metrics`:
- `bench.gemm.<dtype>`: the median TFLOP/s per GPU, each GPU's figure, and the efficiency
  against the model's dense peak (dcctl.evaluate.gpu_peaks) where it is known. It fails when a
  GPU's efficiency is below the dtype's `min_efficiency` (by default 70 % for bf16 only: the
  field has a reference for it), when a GPU's TFLOP/s is below the dtype's `min_tflops`, or
  when the slowest GPU is more than `max_gpu_spread` below the node median; with no peak or no
  threshold the figure is reported, not judged. CPU figures are labelled CPU and never judged
  against a peak.
- `bench.gemm.checksum`: GPUs of one model multiplied identical inputs, so their results must
  agree bitwise; each GPU that differs from the majority of its model fails, named, and so does
  one whose result changed during the soak.
- `bench.gemm.reference`: each GPU whose result slice is off the fp64 reference fails, named.
- `bench.gemm.soak`: warns when a GPU's last window ran more than `max_soak_drop` below its
  first, or when NVML saw a GPU held down by heat or power while it ran (`nvml_samples`).
- `bench.gemm.worker`: an error per rank that failed, naming it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.gpu_peaks import dense_peak, model_label
from dcctl.evaluate.gpus import gpu_label
from dcctl.evaluate.result import Result, Status

RESULT_ID = "bench.gemm"
# The best bf16 GEMMs reach ~80 % of dense peak on H100 and ~87 % on A100 (MEASUREMENTS.md),
# so a healthy GPU clears 70 % with room for clocks and run-to-run spread.
DEFAULT_MIN_EFFICIENCY: dict[str, float] = {"bf16": 0.70}
DEFAULT_MAX_SOAK_DROP = 0.10


class GemmLimits(NamedTuple):
    """The thresholds GEMM figures are judged by; an absent one leaves a figure unjudged."""

    min_efficiency: dict[str, float] = DEFAULT_MIN_EFFICIENCY  # dtype -> fraction of peak
    min_tflops: dict[str, float] = {}  # dtype -> TFLOP/s every GPU must reach
    max_gpu_spread: float | None = None  # slowest GPU below the node median, as a fraction
    max_soak_drop: float = DEFAULT_MAX_SOAK_DROP  # last soak window below the first


# --- words ---------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def tflops_text(value: float) -> str:
    """781.2 -> "781", 51.43 -> "51.4", 0.02143 -> "0.0214"."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def _is_cpu(entry: Mapping[str, Any]) -> bool:
    return entry.get("device") == "cpu"


def _gpu_index(entry: Mapping[str, Any]) -> Any:
    device = str(entry.get("device") or "")
    head, _, index = device.partition(":")
    return int(index) if head == "cuda" and index.isdigit() else entry.get("rank")


def gpu_ref(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `gpu` field of a result about this rank's device; None for a CPU."""
    if _is_cpu(entry):
        return None
    return {"index": _gpu_index(entry), "pci_bus_id": entry.get("pci_bus_id"), "serial": None}


def device_label(entry: Mapping[str, Any]) -> str:
    """ "GPU 3 (00000000:5D:00.0)" or "CPU rank 1"."""
    ref = gpu_ref(entry)
    return gpu_label(ref) if ref is not None else f"CPU rank {shown(entry.get('rank'))}"


def _model(entries: list[Mapping[str, Any]]) -> str:
    names = Counter(str(entry.get("name")) for entry in entries)
    return names.most_common(1)[0][0] if names else "?"


# --- per dtype -----------------------------------------------------------------------------


def _efficiencies(dtype: str, gpus: list[Mapping[str, Any]]) -> list[float | None]:
    found = []
    for gpu in gpus:
        peak = None if _is_cpu(gpu) else dense_peak(str(gpu.get("name")), dtype)
        figure = _number(gpu.get("tflops"))
        found.append(figure / peak if peak and figure is not None else None)
    return found


def _head(dtype: str, median: float, gpus: list[Mapping[str, Any]]) -> str:
    if all(_is_cpu(gpu) for gpu in gpus):
        where = f"CPU ({shown(_model(gpus))})"
        many = f" per process (median of {len(gpus)})" if len(gpus) > 1 else ""
        return f"{dtype} on {where}: {tflops_text(median)} TFLOP/s{many}"
    count = f"median of {len(gpus)}" if len(gpus) > 1 else "1 GPU"
    return f"{dtype}: {tflops_text(median)} TFLOP/s per GPU ({count})"


def _peak_text(dtype: str, gpus: list[Mapping[str, Any]], efficiency: float | None) -> str:
    if all(_is_cpu(gpu) for gpu in gpus):
        return "no peak for CPUs"
    name = _model(gpus)
    label = model_label(name)
    if efficiency is None or label is None:
        return f"no {dtype} dense peak known for {shown(name)}"
    return f"{_percent(efficiency)} of {label} dense peak"


def _expected(
    threshold: float | None, floor: float | None, gap: float | None
) -> dict[str, float] | None:
    expected = {"min_efficiency": threshold, "min_tflops": floor, "max_slowest_gap": gap}
    kept = {key: value for key, value in expected.items() if value is not None}
    return kept or None


def _slow_ones(
    gpus: list[Mapping[str, Any]], efficiencies: list[float | None], threshold: float | None
) -> list[tuple[Mapping[str, Any], float]]:
    if threshold is None:
        return []
    pairs = [(gpu, e) for gpu, e in zip(gpus, efficiencies, strict=True) if e is not None]
    return sorted((pair for pair in pairs if pair[1] < threshold), key=lambda pair: pair[1])


def _skipped(result_id: str, dtype: str, summary: Mapping[str, Any]) -> Result:
    reasons = sorted({str(s.get("reason")) for s in summary.get("skipped") or []})
    why = listed(reasons, len(reasons), "; ") or "no figures"
    return Result(result_id, "skip", f"{dtype} not measured: {why}", kind="bench")


def _below_floor(gpus: list[Mapping[str, Any]], floor: float | None) -> list[Mapping[str, Any]]:
    if floor is None:
        return []
    return sorted((g for g in gpus if float(g["tflops"]) < floor), key=lambda g: g["tflops"])


def _judged(
    gpus: list[Mapping[str, Any]],
    efficiencies: list[float | None],
    threshold: float | None,
    floor: float | None,
    slowest: Mapping[str, Any],
    max_slowest_gap: float | None,
) -> tuple[Status, str, dict[str, Any] | None]:
    """The verdict, what the message adds for it, and the GPU a failure names first."""
    status: Status = "pass"
    extra, gpu = "", None
    slow = _slow_ones(gpus, efficiencies, threshold)
    if slow and threshold is not None:
        status, gpu = "fail", gpu_ref(slow[0][0])
        named = [f"{device_label(g)} at {_percent(e)}" for g, e in slow]
        extra += f"; below {_percent(threshold)} of peak: {listed(named, len(named))}"
    under = _below_floor(gpus, floor)
    if under and floor is not None:
        status, gpu = "fail", gpu or gpu_ref(under[0])
        named = [f"{device_label(g)} at {tflops_text(float(g['tflops']))}" for g in under]
        extra += f"; below {tflops_text(floor)} TFLOP/s: {listed(named, len(named))}"
    vs_median = _number(slowest.get("vs_median"))
    gap = None if vs_median is None else 1.0 - vs_median
    if max_slowest_gap is not None and gap is not None and gap > max_slowest_gap:
        status, gpu = "fail", gpu or gpu_ref(slowest)
        extra += f"; the slowest is more than {_percent(max_slowest_gap)} below the median"
    judged = (
        (max_slowest_gap is not None and len(gpus) > 1)
        or floor is not None
        or (threshold is not None and any(e is not None for e in efficiencies))
    )
    if not judged:
        extra += "; figure with no judgement"
    return status, extra, gpu


def _dtype_result(summary: Mapping[str, Any], limits: GemmLimits) -> Result:
    dtype = str(summary.get("dtype"))
    result_id = f"{RESULT_ID}.{dtype}"
    gpus = [gpu for gpu in summary.get("gpus") or [] if _number(gpu.get("tflops")) is not None]
    median = _number(summary.get("median_tflops"))
    if not gpus or median is None:
        return _skipped(result_id, dtype, summary)
    threshold = limits.min_efficiency.get(dtype)
    floor = limits.min_tflops.get(dtype)
    gap = limits.max_gpu_spread if len(gpus) > 1 else None
    efficiencies = _efficiencies(dtype, gpus)
    known = [e for e in efficiencies if e is not None]
    efficiency = _median(known) if known else None
    slowest = summary.get("slowest") or {}
    vs_median = _number(slowest.get("vs_median"))
    message = f"{_head(dtype, median, gpus)}, {_peak_text(dtype, gpus, efficiency)}"
    if len(gpus) > 1 and vs_median is not None:
        message += f"; slowest {device_label(slowest)} at {_percent(vs_median)} of median"
    status, extra, gpu = _judged(gpus, efficiencies, threshold, floor, slowest, gap)
    metrics: dict[str, Any] = {
        "tflops": median,
        "tflops_per_gpu": [g["tflops"] for g in gpus],
        "slowest_vs_median": vs_median,
    }
    if efficiency is not None:
        metrics.update(efficiency=efficiency, peak_tflops=_peak(dtype, gpus))
    observed = {"tflops": median, "efficiency_per_gpu": efficiencies}
    expected = _expected(threshold if known else None, floor, gap)
    return Result(result_id, status, message + extra, observed, expected, "bench", gpu, metrics)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _peak(dtype: str, gpus: list[Mapping[str, Any]]) -> float | None:
    if all(_is_cpu(gpu) for gpu in gpus):
        return None
    return dense_peak(_model(gpus), dtype)


# --- checksums, reference, soak, errors ----------------------------------------------------


def _mismatch_message(entry: Mapping[str, Any]) -> str:
    name, group = shown(entry.get("name")), shown(entry.get("group"))
    head = f"{device_label(entry)}: {shown(entry.get('dtype'))} result"
    if entry.get("majority") is None:
        return (
            f"{head} differs from other {name} devices' on identical inputs, and no majority of "
            f"the {group} agree, so which is wrong cannot be told"
        )
    return (
        f"{head} differs bitwise from the majority of the {group} {name} devices on identical "
        "inputs: silent data corruption suspected"
    )


def _mismatches(section: Mapping[str, Any], result_id: str) -> list[Result]:
    found = []
    for entry in section.get("checksum_mismatches") or []:
        message = _mismatch_message(entry)
        observed, expected = entry.get("checksum"), entry.get("majority")
        found.append(
            Result(result_id, "fail", message, observed, expected, "bench", gpu_ref(entry))
        )
    return found


def _changed_in_soak(section: Mapping[str, Any], result_id: str) -> list[Result]:
    soak = section.get("soak") or {}
    changed = [g for g in soak.get("gpus") or [] if g.get("checksum_stable") is False]
    return [
        Result(
            result_id,
            "fail",
            f"{device_label(entry)}: {shown(soak.get('dtype'))} result changed during the soak "
            "on the same inputs: silent data corruption suspected",
            kind="bench",
            gpu=gpu_ref(entry),
        )
        for entry in changed
    ]


def _checksum_results(section: Mapping[str, Any]) -> list[Result]:
    result_id = f"{RESULT_ID}.checksum"
    failed = _mismatches(section, result_id) + _changed_in_soak(section, result_id)
    if failed:
        return failed
    compared = [
        summary
        for summary in section.get("dtypes") or []
        if any(len(group.get("ranks") or []) > 1 for group in summary.get("checksum_groups") or [])
    ]
    if not compared:
        message = "one device per model: no checksums to compare"
        return [Result(result_id, "skip", message, kind="bench")]
    names = [str(summary.get("dtype")) for summary in compared]
    count = max(len(summary.get("gpus") or []) for summary in compared)
    message = (
        f"{listed(names, len(names))} results bitwise identical across the {count} devices "
        "of each model"
    )
    return [Result(result_id, "pass", message, kind="bench")]


def _reference_results(section: Mapping[str, Any]) -> list[Result]:
    result_id = f"{RESULT_ID}.reference"
    failed = []
    for entry in section.get("reference_failures") or []:
        error, tolerance = _number(entry.get("ref_max_rel_err")), entry.get("tolerance")
        off = "holds inf or NaN" if error is None else f"is off by {error:.2g}"
        message = (
            f"{device_label(entry)}: {shown(entry.get('dtype'))} result {off} against the fp64 "
            f"reference (tolerance {shown(tolerance)})"
        )
        expected = {"tolerance": tolerance}
        failed.append(Result(result_id, "fail", message, error, expected, "bench", gpu_ref(entry)))
    if failed:
        return failed
    dtypes = [d for d in section.get("dtypes") or [] if d.get("gpus")]
    if not dtypes:
        return []
    names = [str(d.get("dtype")) for d in dtypes]
    count = max(len(d["gpus"]) for d in dtypes)
    message = f"{listed(names, len(names))} results match the fp64 reference on all {count}"
    return [Result(result_id, "pass", f"{message} devices", kind="bench")]


def _throttled(section: Mapping[str, Any]) -> list[str]:
    """`GPU 3: hw_thermal, sw_power_cap` for each GPU NVML saw held down during the soak."""
    samples = section.get("nvml_samples")
    throttled = samples.get("throttled") if isinstance(samples, Mapping) else None
    if not isinstance(throttled, Mapping):
        return [shown(reason) for reason in section.get("throttle_reasons") or []]
    return [f"GPU {shown(index)}: {', '.join(shown(r) for r in reasons)}"
            for index, reasons in throttled.items()]  # fmt: skip


def _soak_result(section: Mapping[str, Any], max_drop: float) -> list[Result]:
    soak = section.get("soak")
    if not isinstance(soak, Mapping) or not soak.get("gpus"):
        return []
    worst = soak.get("worst") or {}
    ratio = _number(worst.get("last_vs_first")) or 0.0
    throttles = _throttled(section)
    least = 1.0 - max_drop
    windows = max(int(g.get("windows") or 0) for g in soak["gpus"])
    head = f"soak {shown(soak.get('dtype'))}, {windows} windows of {shown(soak.get('window_s'))} s"
    first, last = _number(worst.get("first_tflops")), _number(worst.get("last_tflops"))
    figures = ""
    if first is not None and last is not None:
        figures = f" ({tflops_text(first)} -> {tflops_text(last)} TFLOP/s)"
    status: Status = "pass"
    message = f"{head}: the last window of every device at {_percent(ratio)} or more of its first"
    if ratio < least:
        status = "warn"
        message = (
            f"{head}: {device_label(worst)} fell to {_percent(ratio)} of its first window's "
            f"throughput{figures}"
        )
    if throttles:
        status = "warn"
        message += f"; throttling reported: {listed(throttles, len(throttles))}"
    observed = {
        "last_vs_first_per_gpu": [g.get("last_vs_first") for g in soak["gpus"]],
        "min_vs_median_per_gpu": [g.get("min_vs_median") for g in soak["gpus"]],
        "throttle_reasons": throttles,
    }
    metrics = {"last_vs_first": ratio, "windows": windows}
    expected = {"min_last_vs_first": least}
    gpu = gpu_ref(worst) if status == "warn" and ratio < least else None
    result_id = f"{RESULT_ID}.soak"
    return [Result(result_id, status, message, observed, expected, "bench", gpu, metrics)]


def _error_results(section: Mapping[str, Any]) -> list[Result]:
    found = []
    for entry in section.get("errors") or []:
        where = f"rank {shown(entry.get('rank'))}"
        if entry.get("device"):
            where += f" ({shown(entry.get('device'))})"
        message = f"GEMM worker {where} failed: {shown(entry.get('error'))}"
        found.append(Result(f"{RESULT_ID}.worker", "error", message, kind="bench"))
    return found


def evaluate_gemm(section: Mapping[str, Any], limits: GemmLimits | None = None) -> list[Result]:
    """Every GEMM result for one node, from its payload section."""
    limits = limits or GemmLimits()
    results = _error_results(section)
    dtypes = section.get("dtypes") or []
    if not dtypes and not results:
        message = "GEMM benchmark returned no figures and no error"
        return [Result(RESULT_ID, "error", message, kind="bench")]
    results += [_dtype_result(d, limits) for d in dtypes]
    if dtypes:
        results += _checksum_results(section) + _reference_results(section)
    return results + _soak_result(section, limits.max_soak_drop)
