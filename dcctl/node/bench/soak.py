"""NVML readings while a GEMM soak runs: clocks, temperature, power and clock-event reasons.

A thermal or power problem shows over minutes of load, not in a one-second run: the sampler
reads every GPU once a second in a thread of the launcher (the workers only compute), and
`summarize_samples` turns the readings into what the evaluator judges: per GPU the SM clock
range, the hottest reading, the highest power, and every clock-event reason seen under load
with the share of samples it was active in.
"""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from typing import Any

from dcctl.node.probes.gpu.nvml_parse import decode_clock_events

SAMPLE_INTERVAL_S = 1.0
# Reasons that mean the GPU is held below its clocks by heat or power, not by choice (idle,
# application clocks, sync boost, display).
THROTTLE_REASONS = ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
# Points of the per-GPU series kept for plots: a 10-minute soak is 600 samples per GPU.
MAX_SERIES_POINTS = 120


def _reading(nvml: Any, handle: Any, key: str) -> Any:
    if key == "sm_mhz":
        return nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
    if key == "temp_c":
        return nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
    if key == "power_w":
        return nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
    return nvml.nvmlDeviceGetCurrentClocksEventReasons(handle)


def _read_once(nvml: Any, handles: list[Any], started: float) -> list[dict[str, Any]]:
    samples = []
    for index, handle in enumerate(handles):
        sample: dict[str, Any] = {"t_s": round(time.monotonic() - started, 2), "index": index}
        for key in ("sm_mhz", "temp_c", "power_w", "reasons"):
            try:
                sample[key] = _reading(nvml, handle, key)
            except Exception:  # one reading a GPU does not support must not end the sampling
                sample[key] = None
        samples.append(sample)
    return samples


class SoakSampler:
    """Reads NVML once a second between __enter__ and __exit__; `summary()` afterwards."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._samples: list[dict[str, Any]] = []
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def __enter__(self) -> SoakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10 * self._interval_s)

    def _run(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:
            self._error = f"NVML unavailable for soak sampling: {type(exc).__name__}: {exc}"
            return
        try:
            count = pynvml.nvmlDeviceGetCount()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            started = time.monotonic()
            while not self._stop.wait(self._interval_s):
                self._samples.extend(_read_once(pynvml, handles, started))
        except Exception as exc:
            self._error = f"NVML sampling stopped: {type(exc).__name__}: {exc}"
        finally:
            with contextlib.suppress(Exception):
                pynvml.nvmlShutdown()

    def summary(self) -> dict[str, Any]:
        return {**summarize_samples(self._samples), "error": self._error}


def downsampled(points: list[Any]) -> list[Any]:
    """At most MAX_SERIES_POINTS of a series, evenly spaced, for a plot."""
    if len(points) <= MAX_SERIES_POINTS:
        return points
    step = len(points) / MAX_SERIES_POINTS
    return [points[int(i * step)] for i in range(MAX_SERIES_POINTS)]


def _numbers(samples: list[dict[str, Any]], key: str) -> list[float]:
    return [float(s[key]) for s in samples if isinstance(s.get(key), (int, float))]


def _gpu_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    clocks = _numbers(samples, "sm_mhz")
    temps = _numbers(samples, "temp_c")
    power = _numbers(samples, "power_w")
    seen: dict[str, int] = {}
    for sample in samples:
        if isinstance(sample.get("reasons"), int):
            for name in decode_clock_events(sample["reasons"]):
                seen[name] = seen.get(name, 0) + 1
    return {
        "samples": len(samples),
        "sm_mhz_min": min(clocks) if clocks else None,
        "sm_mhz_median": statistics.median(clocks) if clocks else None,
        "sm_mhz_max": max(clocks) if clocks else None,
        "temp_c_max": max(temps) if temps else None,
        "power_w_max": max(power) if power else None,
        # Share of samples each reason was active in.
        "reasons": {name: round(count / len(samples), 3) for name, count in sorted(seen.items())},
        "throttled": sorted(name for name in seen if name in THROTTLE_REASONS),
        "series": downsampled(
            [[s.get("t_s"), s.get("sm_mhz"), s.get("temp_c"), s.get("power_w")] for s in samples]
        ),
    }


def summarize_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """{"gpus": [per-GPU summary with its index], "throttled": {index: [reasons]}}; pure."""
    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for sample in samples:
        if isinstance(sample.get("index"), int):
            by_gpu.setdefault(sample["index"], []).append(sample)
    gpus = [{"index": index, **_gpu_summary(by_gpu[index])} for index in sorted(by_gpu)]
    throttled = {str(gpu["index"]): gpu["throttled"] for gpu in gpus if gpu["throttled"]}
    return {"gpus": gpus, "throttled": throttled, "series_columns": ["t_s", "sm_mhz", "temp_c",
            "power_w"]}  # fmt: skip
