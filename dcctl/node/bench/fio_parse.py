"""fio's JSON report turned into dcctl's figures: a pure parser, tested from recorded output.

Units, as fio writes them (fio's HOWTO, "Interpreting the output" and the JSON it prints):
`bw` is KiB/s, `bw_bytes` B/s (fio >= 3.2x; older reports have only `bw`), `iops` per second,
`runtime` ms, `clat_ns.percentile` ns (fio 2.x wrote `clat` in µs). MB/s here is 10^6 B/s:
`bw_bytes / 1e6`, or `bw * 1024 / 1e6` where `bw_bytes` is missing.

Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import json
import re
from typing import Any, TypedDict

DIRECTIONS = ("read", "write", "trim")
# The latency percentiles dcctl reports, keyed by their name in the payload.
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9))
# fio's size suffixes are powers of two by default (kb_base=1024): 4k, 4K, 4KiB and 4kb are 4096.
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgtp]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


class FioFigures(TypedDict):
    """One direction (read, write or trim) of one fio job, in dcctl's units."""

    name: str
    direction: str
    rw: str | None
    bs: int | None
    iodepth: int | None
    numjobs: int | None
    mb_s: float
    bw_bytes: float
    iops: float
    # p50, p99, p99.9 of completion latency in µs; None where fio did not report it.
    clat_us: dict[str, float | None]
    runtime_s: float
    error: int


class FioReportError(ValueError):
    """The text holds no usable fio JSON report."""


def decode_fio_output(text: str) -> dict[str, Any]:
    """The JSON object in fio's output.

    fio prints notes and errors ("fio: terminating on signal 2", "note: both iodepth >= 1 and
    synchronous I/O engine ...") on the same stream before its JSON, so the object starts at the
    first line that opens one; anything after it (normal output with json,normal) is ignored.
    """
    for match in re.finditer(r"^\{", text, re.MULTILINE):
        try:
            report, _ = json.JSONDecoder().raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(report, dict) and isinstance(report.get("jobs"), list):
            return report
    raise FioReportError("no fio JSON report in the output")


def parse_size(value: Any) -> int | None:
    """fio's size notation in bytes ("4k" -> 4096, "1M", "4096B"); None for ranges and lists."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        return None
    return int(match.group(1)) << (10 * _SIZE_POWER[match.group(2).lower()])


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _options(report: dict[str, Any], job: dict[str, Any]) -> dict[str, Any]:
    """A job's options: the global ones, overridden by its own (fio's own precedence)."""
    merged: dict[str, Any] = {}
    for source in (report.get("global options"), job.get("job options")):
        if isinstance(source, dict):
            merged.update(source)
    return merged


def _percentiles(stats: dict[str, Any]) -> dict[str, float | None]:
    """clat p50/p99/p99.9 in µs, from `clat_ns` (ns, fio 3.x) or `clat` (µs, fio 2.x)."""
    if isinstance(stats.get("clat_ns"), dict):
        clat, to_us = stats["clat_ns"], 1e-3
    else:
        clat, to_us = stats.get("clat") or {}, 1.0
    table: dict[float, float] = {}
    for key, value in (clat.get("percentile") or {}).items():
        try:
            table[round(float(key), 6)] = float(value)
        except (TypeError, ValueError):
            continue
    found: dict[str, float | None] = {}
    for name, point in PERCENTILES:
        value = table.get(point)
        found[name] = None if value is None else round(value * to_us, 3)
    return found


def _did_io(stats: dict[str, Any]) -> bool:
    return any(stats.get(key) for key in ("total_ios", "io_bytes", "bw_bytes", "bw"))


def _bandwidth(stats: dict[str, Any]) -> float:
    """Bytes per second: fio's exact `bw_bytes`, else its KiB/s `bw` times 1024."""
    if "bw_bytes" in stats:
        return float(stats["bw_bytes"])
    return float(stats.get("bw", 0)) * 1024


def _figures(name: str, direction: str, options: dict[str, Any], stats: dict[str, Any],
             error: int) -> FioFigures:  # fmt: skip
    bw_bytes = _bandwidth(stats)
    return {
        "name": name,
        "direction": direction,
        "rw": options.get("rw", options.get("readwrite")),
        "bs": parse_size(options.get("bs", options.get("blocksize"))),
        "iodepth": _integer(options.get("iodepth")),
        "numjobs": _integer(options.get("numjobs")),
        "mb_s": round(bw_bytes / 1e6, 3),
        "bw_bytes": bw_bytes,
        "iops": round(float(stats.get("iops", 0)), 3),
        "clat_us": _percentiles(stats),
        "runtime_s": round(float(stats.get("runtime", 0)) / 1000, 3),
        "error": error,
    }


def report_figures(report: dict[str, Any]) -> list[FioFigures]:
    """One record per job and direction that did I/O, in the report's order."""
    found: list[FioFigures] = []
    for job in report.get("jobs") or []:
        if not isinstance(job, dict):
            continue
        options = _options(report, job)
        error = _integer(job.get("error")) or 0
        for direction in DIRECTIONS:
            stats = job.get(direction)
            if isinstance(stats, dict) and _did_io(stats):
                found.append(_figures(str(job.get("jobname")), direction, options, stats, error))
    return found


def report_errors(report: dict[str, Any]) -> list[tuple[str, int]]:
    """(jobname, errno) for each job fio says failed: `error` is the errno it stopped on."""
    failed: list[tuple[str, int]] = []
    for job in report.get("jobs") or []:
        error = _integer(job.get("error")) if isinstance(job, dict) else None
        if error:
            failed.append((str(job.get("jobname")), error))
    return failed


def parse_fio_json(text: str) -> list[FioFigures]:
    """fio's `--output-format=json` output -> one FioFigures per job and direction with I/O.

    Raises FioReportError when the text holds no fio report.
    """
    return report_figures(decode_fio_output(text))
