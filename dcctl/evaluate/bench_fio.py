"""Judges the fio storage benchmark (the section dcctl.node.bench.fio.run_fio returns).

One `bench.fio.<job>` result per job that ran. Its figures (MB/s = 10^6 B/s, IOPS, completion
latency p50/p99/p99.9 in µs, all fio's own) are its `metrics` and, as what was judged, its
`observed`. Verdict per job, worst first:
- error: the threshold itself is malformed;
- fail: a figure beyond its threshold (`min_<job>_mb_s`, `min_<job>_iops`, `max_<job>_p99_us`);
- warn: the job ran buffered because the filesystem refused O_DIRECT (page cache in the figures);
- pass: otherwise; with no threshold the figures are reported without a judgement.
A section with an `error` (fio missing, scratch_dir refused, a job cut by the deadline or a
signal) adds one `bench.fio` error result with that line; the jobs that ran keep theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from dcctl.evaluate.bounds import shown
from dcctl.evaluate.common import BadExpectation, expect_number
from dcctl.evaluate.result import Result, Status
from dcctl.node.bench.fio_request import JOB_ORDER

RESULT_ID = "bench.fio"


class Limit(NamedTuple):
    """One threshold kind: `<bound>_<job>_<suffix>` compares figure `metric` of the job."""

    bound: str  # "min" or "max"
    suffix: str
    unit: str


LIMITS = (Limit("min", "mb_s", "MB/s"), Limit("min", "iops", "IOPS"), Limit("max", "p99_us", "µs"))


def threshold_keys() -> dict[str, str]:
    """Every threshold key the evaluator reads, with a description (for the `expect` table)."""
    words = {"mb_s": "least MB/s (10^6 B/s)", "iops": "least IOPS", "p99_us": "most p99 clat, µs"}
    return {
        f"{limit.bound}_{job}_{limit.suffix}": f"number: fio {job}, {words[limit.suffix]}"
        for job in JOB_ORDER
        for limit in LIMITS
    }


def _figure(job: Mapping[str, Any], limit: Limit) -> Any:
    if limit.suffix == "p99_us":
        clat = job.get("clat_us")
        return clat.get("p99") if isinstance(clat, Mapping) else None
    return job.get(limit.suffix)


def _metrics(job: Mapping[str, Any]) -> dict[str, Any]:
    return {"mb_s": job.get("mb_s"), "iops": job.get("iops"), "clat_us": job.get("clat_us")}


def _size(nbytes: Any) -> str:
    if type(nbytes) is not int or nbytes <= 0:
        return shown(nbytes)
    for unit in ("B", "KiB", "MiB"):
        if nbytes % 1024:
            return f"{nbytes} {unit}"
        nbytes //= 1024
    return f"{nbytes} GiB"


def _latency(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "?"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def _figures_text(job: Mapping[str, Any]) -> str:
    clat = job.get("clat_us")
    clat = clat if isinstance(clat, Mapping) else {}
    points = "/".join(_latency(clat.get(p)) for p in ("p50", "p99", "p99.9"))
    return (
        f"{shown(job.get('name'))} ({_size(job.get('bs'))}, QD{shown(job.get('iodepth'))}, "
        f"{shown(job.get('numjobs'))} job(s)): {_number_text(job.get('mb_s'), 1)} MB/s, "
        f"{_number_text(job.get('iops'), 0)} IOPS, clat p50/p99/p99.9 {points} µs"
    )


def _number_text(value: Any, digits: int) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return shown(value)
    return f"{value:.{digits}f}"


def _limits_for(name: str, thresholds: Mapping[str, Any]) -> dict[str, float]:
    """This job's thresholds, checked to be numbers (BadExpectation otherwise)."""
    found = {}
    for limit in LIMITS:
        key = f"{limit.bound}_{name}_{limit.suffix}"
        if key in thresholds:
            found[key] = expect_number(key, thresholds[key])
    return found


def _breaches(job: Mapping[str, Any], name: str, limits: dict[str, float]) -> list[str]:
    """ "below 1000 MB/s"-style phrases for every threshold the job misses."""
    missed = []
    for limit in LIMITS:
        key = f"{limit.bound}_{name}_{limit.suffix}"
        if key not in limits:
            continue
        value = _figure(job, limit)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            missed.append(f"no {limit.unit} figure to compare with {key} {limits[key]:g}")
        elif limit.bound == "min" and value < limits[key]:
            missed.append(f"below {limits[key]:g} {limit.unit}")
        elif limit.bound == "max" and value > limits[key]:
            missed.append(f"p99 above {limits[key]:g} {limit.unit}")
    return missed


def _judge_job(job: Mapping[str, Any], thresholds: Mapping[str, Any]) -> Result:
    name = str(job.get("name"))
    result_id = f"{RESULT_ID}.{name}"
    try:
        limits = _limits_for(name, thresholds)
    except BadExpectation as exc:
        figures = _metrics(job)
        return Result(result_id, "error", str(exc), figures, None, "bench", metrics=figures)
    text = _figures_text(job)
    missed = _breaches(job, name, limits)
    status: Status = "pass"
    if missed:
        status, text = "fail", f"{text}; {', '.join(missed)}"
    elif limits:
        text = f"{text}; within every threshold"
    else:
        text = f"{text}; no threshold, figures with no judgement"
    if job.get("direct") is False:
        status = "fail" if status == "fail" else "warn"
        text += "; ran buffered (O_DIRECT refused), so the page cache is in the figures"
    figures = _metrics(job)
    return Result(result_id, status, text, figures, limits or None, "bench", metrics=figures)


def evaluate_fio(section: Any, thresholds: dict[str, float]) -> list[Result]:
    """One result per fio job in the section, plus one `bench.fio` error when it has one."""
    if not isinstance(section, Mapping):
        message = f"no fio results in the payload ({type(section).__name__})"
        return [Result(RESULT_ID, "error", message, None, None, kind="bench")]
    jobs = [job for job in section.get("jobs") or [] if isinstance(job, Mapping)]
    results = [_judge_job(job, thresholds) for job in jobs]
    error = section.get("error")
    if error:
        results.append(Result(RESULT_ID, "error", f"fio: {error}", None, None, kind="bench"))
    elif not jobs:
        results.append(Result(RESULT_ID, "error", "fio ran no jobs", None, None, kind="bench"))
    return results
