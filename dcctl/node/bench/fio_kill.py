"""Ending a fio run: its main process and every job process it forked.

fio forks one process per job, and each calls setsid(): a job process lives in a session and
process group of its own, so killing fio's group leaves it running (and, once fio is gone,
hanging for ever on fio's shared memory). Every process of a run carries `--directory=<job dir>`
on its command line (a forked child keeps its parent's), and the job directory is random and
dcctl's own, so that argument finds them all, whoever their parent is by then. (`--thread`
would keep the jobs in one process, but costs a third of the 4 KiB random IOPS on 2 cores.)

Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

_PROC = "/proc"


def run_processes(job_dir: str) -> list[int]:
    """Live processes of the fio run in `job_dir`; empty where there is no /proc (macOS)."""
    token = f"--directory={job_dir}".encode()
    try:
        entries = os.listdir(_PROC)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(_PROC, entry, "cmdline"), "rb") as cmdline:
                arguments = cmdline.read().split(b"\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        # A zombie's cmdline is empty: only processes that still run match.
        if token in arguments:
            found.append(int(entry))
    return found


def kill_run(pgid: int | None, job_dir: str) -> None:
    """SIGKILL fio's own process group first (it forks no more jobs), then every job process."""
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in run_processes(job_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(job_dir: str, timeout_s: float) -> bool:
    """Whether every process of the run is gone within `timeout_s` (files stay open until)."""
    give_up = time.monotonic() + timeout_s
    while run_processes(job_dir):
        if time.monotonic() >= give_up:
            return False
        time.sleep(0.05)
    return True
