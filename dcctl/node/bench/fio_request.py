"""What a fio benchmark request may ask for, and the fio command each job becomes.

Only numbers and job names come from the request; every path and option on fio's command line
is dcctl's own, so no request can point fio at a device or another file.
Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple


class JobSpec(NamedTuple):
    rw: str
    bs: int
    iodepth: int
    numjobs: int


JOBS = {
    "seqread": JobSpec("read", 1024**2, 32, 1),
    "seqwrite": JobSpec("write", 1024**2, 32, 1),
    "randread": JobSpec("randread", 4096, 64, 4),
    "randwrite": JobSpec("randwrite", 4096, 64, 4),
}
JOB_ORDER = ("seqread", "seqwrite", "randread", "randwrite")
DEFAULT_RUNTIME_S = 30.0
DEFAULT_RAMP_S = 2.0
DEFAULT_SIZE_MB = 1024.0
MIN_RUNTIME_S = 0.1
MIN_SIZE_MB = 1.0
PARAMS = ("scratch_dir", "runtime_s", "ramp_s", "size_mb", "jobs")
# Files named by dcctl: fio's $jobnum is the clone number, so numjobs=4 uses .0 to .3 and the
# single-file jobs reuse .0.
FILENAME_FORMAT = "dcctl-fio.$jobnum.$filenum"


class Request(NamedTuple):
    scratch_dir: str
    runtime_s: float
    ramp_s: float
    size_mb: float
    jobs: tuple[str, ...]


class BadParams(ValueError):
    """The request cannot be run as sent."""


def _number(params: dict[str, Any], key: str, default: float, minimum: float) -> float:
    value = params.get(key)
    if value is None:  # absent, or JSON null: the default
        value = default
    # `type(...) in`: JSON true is an int to isinstance, and not a duration.
    if type(value) not in (int, float) or not minimum <= value < float("inf"):
        raise BadParams(f"{key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _job_names(params: dict[str, Any]) -> tuple[str, ...]:
    wanted = params.get("jobs")
    if wanted is None:
        wanted = list(JOB_ORDER)
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
        raise BadParams(f"jobs must be a non-empty list of job names, got {wanted!r}")
    unknown = [w for w in wanted if w not in JOBS]
    if unknown:
        raise BadParams(f"unknown fio job {unknown[0]!r} (known: {', '.join(JOB_ORDER)})")
    return tuple(name for name in JOB_ORDER if name in wanted)


def read_params(params: dict[str, Any]) -> Request:
    """The request, or BadParams. fio options beyond these (filename above all) are refused:
    dcctl alone decides where fio writes."""
    extra = sorted(set(params) - set(PARAMS))
    if extra:
        raise BadParams(
            f"fio parameter {extra[0]!r} is not accepted (accepted: {', '.join(PARAMS)}); "
            "dcctl names the files fio writes itself"
        )
    scratch_dir = params.get("scratch_dir")
    if not isinstance(scratch_dir, str) or not scratch_dir.startswith("/"):
        raise BadParams(f"scratch_dir must be an absolute path, got {scratch_dir!r}")
    return Request(
        scratch_dir=scratch_dir,
        runtime_s=_number(params, "runtime_s", DEFAULT_RUNTIME_S, MIN_RUNTIME_S),
        ramp_s=_number(params, "ramp_s", DEFAULT_RAMP_S, 0.0),
        size_mb=_number(params, "size_mb", DEFAULT_SIZE_MB, MIN_SIZE_MB),
        jobs=_job_names(params),
    )


def fio_argv(fio: str, name: str, job_dir: str, request: Request, direct: bool,
             engine: str) -> list[str]:  # fmt: skip
    """The fio command for one job: every value generated here, none taken from the request
    but numbers."""
    spec = JOBS[name]
    return [
        fio,
        "--output-format=json",
        f"--output={os.path.join(job_dir, name + '.json')}",
        "--eta=never",
        f"--name={name}",
        f"--directory={job_dir}",
        f"--filename_format={FILENAME_FORMAT}",
        f"--rw={spec.rw}",
        f"--bs={spec.bs}",
        f"--iodepth={spec.iodepth}",
        f"--numjobs={spec.numjobs}",
        f"--size={int(request.size_mb * 1024**2)}",
        f"--direct={1 if direct else 0}",
        f"--ioengine={engine}",
        "--time_based",
        f"--runtime={round(request.runtime_s * 1000)}ms",
        f"--ramp_time={round(request.ramp_s * 1000)}ms",
        "--group_reporting",
    ]
