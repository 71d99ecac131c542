"""The fio storage benchmark, run on the node: `run_fio(params, deadline)` -> payload section.

Four jobs, one fio command each, on files in a fresh `dcctl-fio-<random>` directory inside the
host's scratch_dir: sequential read and write (bs 1 MiB, iodepth 32) and random read and write
(bs 4 KiB, iodepth 64, 4 jobs), O_DIRECT, time-based after a ramp. The jobs share their files
(`dcctl-fio.<jobnum>.0`), so the largest job sets the space needed, and fio lays out each file
once. Figures are fio's own (see fio_parse). The directory goes when the run ends, whether it
ends normally, at the deadline, on SIGTERM/SIGINT/SIGHUP, or (through the cleanup guard) by
SIGKILL.

Params (see fio_request; JSON null or absent = the default): scratch_dir (required,
absolute), runtime_s per job (30), ramp_s (2), size_mb (MiB per file, 1024; randread and
randwrite use four files), jobs (a subset of JOB_ORDER, run in that order). Anything else, a
`filename` above all, is refused.

Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from typing import Any, NamedTuple, TypedDict

from dcctl.node.bench.fio_env import (
    FALLBACK_ENGINE,
    direct_io_refused,
    find_fio,
    fio_version,
    missing_fio_message,
    pick_engine,
)
from dcctl.node.bench.fio_kill import kill_run, wait_gone
from dcctl.node.bench.fio_parse import (
    FioReportError,
    decode_fio_output,
    report_errors,
    report_figures,
)
from dcctl.node.bench.fio_process import (
    GONE_WAIT_S,
    Outcome,
    StopFlag,
    run_watched,
    stop_signals,
)
from dcctl.node.bench.fio_reaper import Guard, start_guard
from dcctl.node.bench.fio_request import JOBS, BadParams, Request, fio_argv, read_params
from dcctl.node.bench.fio_scratch import (
    ScratchRefused,
    make_job_dir,
    refuse_short_space,
    refuse_unsafe,
    remove_job_dir,
)
from dcctl.node.payload import format_progress

# Time kept before the deadline to kill fio and remove its files.
CLEANUP_RESERVE_S = 1.0
# fio is quiet until a job ends; a progress line this often shows the task is alive.
PROGRESS_EVERY_S = 5.0
_SYNC_ENGINES = ("psync", "sync", "pvsync", "pvsync2")


class FioJob(TypedDict):
    name: str
    rw: str
    bs: int
    iodepth: int
    numjobs: int
    direct: bool
    mb_s: float
    iops: float
    clat_us: dict[str, float | None]
    runtime_s: float


class FioSection(TypedDict):
    fio_version: str | None
    ioengine: str | None
    direct: bool
    note: str | None
    directory: str | None
    jobs: list[FioJob]
    error: str | None


def _progress(update: dict[str, Any]) -> None:
    sys.stdout.write(format_progress({"bench": "fio", **update}))
    sys.stdout.flush()


def _last_line(path: str) -> str:
    """The last thing fio said (its errors come last), for a one-line error."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][:200] if lines else "no output"


class JobRun(NamedTuple):
    """One job's end: its figures, or why there are none; `einval` when fio hit EINVAL."""

    job: FioJob | None
    error: str | None
    einval: bool = False


def _figures(name: str, report: dict[str, Any], direct: bool, engine: str) -> JobRun:
    spec = JOBS[name]
    direction = "write" if "write" in spec.rw else "read"
    found = [f for f in report_figures(report) if f["direction"] == direction]
    if not found:
        return JobRun(None, f"fio did no {direction} I/O in {name}")
    figures = found[0]
    job: FioJob = {
        "name": name,
        "rw": spec.rw,
        "bs": spec.bs,
        # A synchronous engine has one I/O in flight whatever iodepth says (fio caps it at 1).
        "iodepth": 1 if engine in _SYNC_ENGINES else spec.iodepth,
        "numjobs": spec.numjobs,
        "direct": direct,
        "mb_s": figures["mb_s"],
        "iops": figures["iops"],
        "clat_us": figures["clat_us"],
        "runtime_s": figures["runtime_s"],
    }
    return JobRun(job, None)


def _judge_exit(name: str, job_dir: str, outcome: Outcome, direct: bool, engine: str) -> JobRun:
    log = os.path.join(job_dir, name + ".log")
    try:
        with open(os.path.join(job_dir, name + ".json"), encoding="utf-8") as output:
            report = decode_fio_output(output.read())
    except (OSError, FioReportError):
        return JobRun(None, f"fio exited {outcome.returncode} in {name}: {_last_line(log)}")
    failed = report_errors(report)
    if failed:
        code = failed[0][1]
        message = f"fio failed in {name}: {errno.errorcode.get(code, code)} ({os.strerror(code)})"
        return JobRun(None, f"{message}: {_last_line(log)}", code == errno.EINVAL)
    if outcome.returncode != 0:
        return JobRun(None, f"fio exited {outcome.returncode} in {name}: {_last_line(log)}")
    return _figures(name, report, direct, engine)


class Run(NamedTuple):
    """What one run needs besides the request."""

    fio: str
    engine: str
    job_dir: str
    deadline: float
    stop: StopFlag
    guard: Guard | None


def _run_job(run: Run, request: Request, name: str, step: int, direct: bool) -> JobRun:
    total = len(request.jobs)
    planned = request.ramp_s + request.runtime_s

    def tick(elapsed_s: float) -> None:
        _progress(
            {"job": name, "step": step, "of": total, "elapsed_s": round(elapsed_s, 1),
             "runtime_s": planned}
        )  # fmt: skip

    argv = fio_argv(run.fio, name, run.job_dir, request, direct, run.engine)
    log = os.path.join(run.job_dir, name + ".log")
    stop_at = run.deadline - CLEANUP_RESERVE_S
    outcome = run_watched(
        argv, run.job_dir, log, stop_at, run.stop, run.guard, tick, PROGRESS_EVERY_S
    )
    if outcome.ending == "stopped":
        return JobRun(None, f"stopped by {run.stop.name()} during {name}")
    if outcome.ending == "deadline":
        return JobRun(None, f"deadline reached during {name}: fio killed after "
                            f"{outcome.elapsed_s:.1f} s")  # fmt: skip
    return _judge_exit(name, run.job_dir, outcome, direct, run.engine)


def _not_run(request: Request, name: str) -> str:
    rest = list(request.jobs[request.jobs.index(name) + 1 :])
    return f"; not run: {', '.join(rest)}" if rest else ""


def _refused_note(where: str) -> str:
    return (
        f"O_DIRECT refused by the filesystem of {where} (EINVAL): ran buffered (direct=0), "
        "so the figures include the page cache"
    )


def _run_jobs(run: Run, request: Request, section: FioSection) -> None:
    """Run the jobs in order into `section`; the first failure ends the run and names its job."""
    for step, name in enumerate(request.jobs, 1):
        if run.stop.signum is not None:
            section["error"] = f"stopped by {run.stop.name()} before {name}" + _not_run(
                request, name
            )
            return
        if time.monotonic() >= run.deadline - CLEANUP_RESERVE_S:
            section["error"] = f"deadline reached before {name} started" + _not_run(request, name)
            return
        _progress({"job": name, "step": step, "of": len(request.jobs)})
        done = _run_job(run, request, name, step, section["direct"])
        if done.einval and section["direct"]:
            # O_DIRECT opened but the I/O itself was refused: the same job again, buffered.
            section["direct"] = False
            section["note"] = _refused_note(request.scratch_dir)
            done = _run_job(run, request, name, step, False)
        if done.job is None:
            section["error"] = f"{done.error}{_not_run(request, name)}"
            return
        section["jobs"].append(done.job)


def _in_job_dir(fio: str, engine: str, request: Request, deadline: float,
                section: FioSection) -> None:  # fmt: skip
    """Make the job directory, run the jobs in it, and remove it whatever happens."""
    with stop_signals() as stop:
        try:
            job_dir, created = make_job_dir(request.scratch_dir)
        except OSError as exc:
            section["error"] = f"cannot create a directory in {request.scratch_dir}: {exc}"
            return
        guard = start_guard(job_dir, created)
        try:
            if direct_io_refused(job_dir):
                section["direct"] = False
                section["note"] = _refused_note(request.scratch_dir)
            _run_jobs(Run(fio, engine, job_dir, deadline, stop, guard), request, section)
        except OSError as exc:
            section["error"] = f"fio could not run in {job_dir}: {exc}"
        finally:
            # No process of the run outlives it, whatever ended it (a fio that crashed could
            # leave its job processes behind).
            kill_run(None, job_dir)
            wait_gone(job_dir, GONE_WAIT_S)
            problem = remove_job_dir(job_dir, created)
            if guard is not None:
                guard.done()
        if stop.signum is not None and section["error"] is None:
            # It came after the last job, while the files went: the figures stand, and the
            # caller still learns it was asked to stop.
            section["error"] = f"stopped by {stop.name()} after the last job"
        if problem is not None:
            section["error"] = "; ".join(filter(None, [section["error"], problem]))


def empty_section(directory: str | None) -> FioSection:
    return {
        "fio_version": None,
        "ioengine": None,
        "direct": True,
        "note": None,
        "directory": directory,
        "jobs": [],
        "error": None,
    }


def run_fio(params: dict[str, Any], deadline: float) -> FioSection:
    """Run the requested fio jobs; finishes before `deadline` (a time.monotonic() value).

    Every failure is a value: `error` says, in one line, what went wrong and which job it cut;
    the jobs that finished before it keep their figures.
    """
    scratch_dir = params.get("scratch_dir")
    section = empty_section(scratch_dir if isinstance(scratch_dir, str) else None)
    try:
        request = read_params(params)
        refuse_unsafe(request.scratch_dir)
    except (BadParams, ScratchRefused) as exc:
        section["error"] = str(exc)
        return section
    fio = find_fio()
    if fio is None:
        section["error"] = missing_fio_message()
        return section
    section["fio_version"] = fio_version(fio)
    section["ioengine"] = pick_engine(fio)
    try:
        refuse_short_space(request.scratch_dir, request.size_mb,
                           max(JOBS[name].numjobs for name in request.jobs))  # fmt: skip
    except ScratchRefused as exc:
        section["error"] = str(exc)
        return section
    if time.monotonic() >= deadline - CLEANUP_RESERVE_S:
        section["error"] = f"deadline reached before {request.jobs[0]} started"
        return section
    _in_job_dir(fio, section["ioengine"] or FALLBACK_ENGINE, request, deadline, section)
    return section
