"""The figures of a host document as flat points: what history stores, baselines compare and
the Prometheus textfile exports. One reading, so a metric has the same name everywhere."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MetricPoint:
    """One figure: `name` is the result id and the metric key (`bench.gemm.bf16.tflops`);
    `gpu_index` is the GPU the result concerns, None for node-wide figures."""

    name: str
    gpu_index: int | None
    value: float
    # The result's status, so a baseline can be drawn from passing figures only.
    status: str

    @property
    def key(self) -> tuple[str, int | None]:
        return (self.name, self.gpu_index)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def result_points(result: Mapping[str, Any]) -> Iterator[MetricPoint]:
    """The numeric top-level entries of one result's `metrics` (nested tables are for
    reports: a sweep's per-size rows are not trended one by one)."""
    metrics = result.get("metrics")
    if not isinstance(metrics, Mapping):
        return
    gpu = result.get("gpu")
    index = gpu.get("index") if isinstance(gpu, Mapping) else None
    gpu_index = index if isinstance(index, int) and not isinstance(index, bool) else None
    for key, raw in metrics.items():
        value = _number(raw)
        if value is not None:
            yield MetricPoint(f"{result['id']}.{key}", gpu_index, value, str(result.get("status")))


def host_points(host_document: Mapping[str, Any]) -> list[MetricPoint]:
    """Every figure of a host document's results, in their order."""
    return [
        point
        for result in host_document.get("results") or []
        if isinstance(result, Mapping) and isinstance(result.get("id"), str)
        for point in result_points(result)
    ]
