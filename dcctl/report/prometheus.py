"""A run as a Prometheus textfile, for node_exporter's textfile collector.

One gauge per check status, per benchmark figure and per host, plus when the run ended and how
long it took. Written atomically (a temp file in the same directory, renamed over the old one),
so the collector never reads half a file; the temp name starts with "." and does not end in
".prom", so the collector never picks it up either.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from dcctl.results.metrics import host_points

# The gauge value of each result status; worse is higher, so max() over a series alerts.
STATUS_VALUES: dict[str, int] = {"skip": -1, "pass": 0, "warn": 1, "fail": 2, "error": 3}
_UNKNOWN_STATUS = STATUS_VALUES["error"]
# node_exporter runs as its own user: it must be able to read the file.
TEXTFILE_MODE = 0o644

Labels = tuple[tuple[str, str], ...]

_FAMILIES: tuple[tuple[str, str], ...] = (
    (
        "dcctl_check_status",
        "Result of a dcctl check: 0 pass, 1 warn, 2 fail, 3 error, -1 skip "
        '(gpu is the GPU index, "" for node-wide checks).',
    ),
    ("dcctl_metric", 'A benchmark figure measured by dcctl (gpu "" for node-wide figures).'),
    ("dcctl_host_up", "1 when dcctl evaluated the host, 0 when it could not (unreachable, ...)."),
    ("dcctl_last_run_timestamp_seconds", "When this dcctl run was written, in Unix seconds."),
    ("dcctl_audit_duration_seconds", "How long this dcctl run took, in seconds."),
)


def render_textfile(document: Mapping[str, Any], duration_s: float, now: datetime) -> str:
    samples: dict[str, dict[Labels, float]] = {
        "dcctl_check_status": _check_status(document),
        "dcctl_metric": _metrics(document),
        "dcctl_host_up": _host_up(document),
        "dcctl_last_run_timestamp_seconds": {(): now.timestamp()},
        "dcctl_audit_duration_seconds": {(): float(duration_s)},
    }
    lines: list[str] = []
    for name, help_text in _FAMILIES:
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(_sample_line(name, labels, value) for labels, value in samples[name].items())
    return "\n".join(lines) + "\n"


def write_textfile(
    path: Path, document: Mapping[str, Any], duration_s: float, now: datetime
) -> None:
    """Replace `path` with the rendered textfile in one rename; OSError goes to the caller."""
    from dcctl.results.store import write_text_atomic

    write_text_atomic(path, render_textfile(document, duration_s, now), TEXTFILE_MODE)


def _hosts(document: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    for host in document.get("hosts") or []:
        if isinstance(host, Mapping) and isinstance(host.get("name"), str):
            yield host


def _gpu_label(result: Mapping[str, Any]) -> str:
    gpu = result.get("gpu")
    index = gpu.get("index") if isinstance(gpu, Mapping) else None
    return str(index) if isinstance(index, int) and not isinstance(index, bool) else ""


def _status_value(status: Any) -> int:
    if not isinstance(status, str):
        return _UNKNOWN_STATUS
    return STATUS_VALUES.get(status, _UNKNOWN_STATUS)


def _check_status(document: Mapping[str, Any]) -> dict[Labels, float]:
    """One sample per (host, check, gpu); a repeated one keeps the worse status, since two
    samples with one label set make the whole file unreadable to Prometheus."""
    samples: dict[Labels, float] = {}
    for host in _hosts(document):
        for result in host.get("results") or []:
            if not isinstance(result, Mapping) or not isinstance(result.get("id"), str):
                continue
            labels = (("host", host["name"]), ("check", result["id"]), ("gpu", _gpu_label(result)))
            value = float(_status_value(result.get("status")))
            if labels not in samples or value > samples[labels]:
                samples[labels] = value
    return samples


def _metrics(document: Mapping[str, Any]) -> dict[Labels, float]:
    """One sample per (host, metric, gpu); a repeated figure keeps the one from the worse result."""
    samples: dict[Labels, float] = {}
    ranks: dict[Labels, int] = {}
    for host in _hosts(document):
        for point in host_points(host):
            gpu = "" if point.gpu_index is None else str(point.gpu_index)
            labels = (("host", host["name"]), ("metric", point.name), ("gpu", gpu))
            rank = _status_value(point.status)
            if labels not in samples or rank > ranks[labels]:
                samples[labels] = point.value
                ranks[labels] = rank
    return samples


def _host_up(document: Mapping[str, Any]) -> dict[Labels, float]:
    samples: dict[Labels, float] = {}
    for host in _hosts(document):
        labels = (("host", host["name"]),)
        up = 0.0 if host.get("error") else 1.0
        samples[labels] = min(up, samples.get(labels, up))
    return samples


def _sample_line(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {_format_value(value)}"
    body = ",".join(f'{key}="{_escape_label(text)}"' for key, text in labels)
    return f"{name}{{{body}}} {_format_value(value)}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape_label(text: str) -> str:
    """Label values escape backslash, double quote and line feed (the exposition format)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
