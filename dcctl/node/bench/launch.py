"""Start a benchmark's torch workers under the host's python and collect what each rank wrote.

The workers run outside the `-S` runtime (torch lives in the node's site-packages) with the
runtime root on PYTHONPATH, so `-m dcctl.node.bench.<x>_worker` imports the shipped code. Each
rank writes `rank-<N>.json` into a fresh directory; a rank that wrote nothing is reported by
number with the tail of the workers' stderr. Their progress lines are relayed to this task's
stdout as they come, so the controller shows them live.

Every worker dies with this task: they stay in its process group (the node's `timeout` and the
stdin watchdog kill that group), and torchrun, which gives each rank a session of its own,
is stopped here at the deadline, on SIGTERM/SIGINT, or when its ranks outlive it (see
dcctl.node.bench.orphans, which each worker calls first).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any

import dcctl
from dcctl.node.bench.orphans import LAUNCHER_ENV
from dcctl.node.payload import PROGRESS_START

# Seconds between SIGTERM to the workers and SIGKILL: torchrun forwards SIGTERM to its ranks.
KILL_GRACE_S = 5.0
STDERR_TAIL_LINES = 20
# A progress line longer than this is not relayed: a worker gone wrong must not flood the task.
MAX_RELAYED_LINE = 64 * 1024


# A task killed with SIGKILL (the node's `timeout -k`, the stdin watchdog) cannot remove its
# rank directory; the next bench run on the node removes those older than this.
STALE_OUT_DIR_S = 24 * 3600.0
OUT_DIR_PREFIX = "dcctl-bench-"


def _remove_stale_out_dirs() -> None:
    root = tempfile.gettempdir()
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            with contextlib.suppress(OSError):
                if (
                    entry.name.startswith(OUT_DIR_PREFIX)
                    and entry.is_dir(follow_symlinks=False)
                    and entry.stat(follow_symlinks=False).st_uid == os.getuid()
                    and now - entry.stat(follow_symlinks=False).st_mtime > STALE_OUT_DIR_S
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)  # fmt: skip


def runtime_root() -> str:
    """The directory holding the shipped `dcctl` package (the runtime, or a checkout)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(dcctl.__file__)))


class WorkerRun:
    """How one worker launch ended: each rank's document, and why ranks are missing."""

    def __init__(
        self, rank_docs: list[dict[str, Any]], exit_code: int | None, timed_out: bool, tail: str
    ) -> None:
        self.rank_docs = rank_docs
        self.exit_code = exit_code
        self.timed_out = timed_out
        self.stderr_tail = tail

    def error(self, ranks: int | Sequence[int], what: str) -> str | None:
        """One line when the launch did not give every rank's document, else None.

        `ranks`: how many ranks the launch ran (numbered from 0), or their numbers (a node's
        share of a job spanning nodes)."""
        seen = {doc.get("rank") for doc in self.rank_docs}
        wanted = range(ranks) if isinstance(ranks, int) else ranks
        missing = [rank for rank in wanted if rank not in seen]
        if self.timed_out:
            return f"{what} did not finish before the deadline (ranks without a result: {missing})"
        if not missing:
            return None
        why = root_cause(self.stderr_tail) or _last_words(self.stderr_tail)
        return (f"{what} exited {self.exit_code} without a result from rank(s) {missing}: "
                f"{why or f'exit status {self.exit_code}'}")  # fmt: skip


def _last_words(text: str) -> str | None:
    """The last line that says something (torchrun ends its report with a rule of '=')."""
    lines = [line.strip() for line in text.splitlines() if line.strip(" =-\t")]
    return lines[-1] if lines else None


def root_cause(text: str) -> str | None:
    """torchrun's "Root Cause (first observed failure)" block in one line, e.g. "rank 3
    (local_rank: 1) exitcode -9 (SIGKILL)", or None when the text has none."""
    start = text.rfind("Root Cause")
    if start < 0:
        return None
    fields = {}
    for line in text[start:].splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() in ("rank", "exitcode"):
            fields[name.strip()] = " ".join(value.split())
    if "rank" not in fields:
        return None
    exit_code = fields.get("exitcode", "?").split(" (pid")[0]
    signal_name = fields.get("exitcode", "").rpartition("(")[2].rstrip(")")
    died = f" ({signal_name})" if signal_name.startswith("SIG") else ""
    return f"rank {fields['rank']} exited {exit_code}{died}"


def _worker_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    root = runtime_root()
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("DCCTL_STDIN_WATCHDOG", None)  # the workers' stdin is not the controller's
    env[LAUNCHER_ENV] = str(os.getpid())  # see dcctl.node.bench.orphans
    env["PYTHONUNBUFFERED"] = "1"
    # Rank i on CUDA device i in NVML's order (PCI bus), so a finding names the right GPU;
    # CUDA's own default puts the fastest first.
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    env.update(extra or {})
    return env


def _relay(stream: IO[str]) -> None:
    """Copy progress lines to our stdout as they arrive; drop everything else."""
    for line in stream:
        if line.startswith(PROGRESS_START) and len(line) <= MAX_RELAYED_LINE:
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write(line if line.endswith("\n") else line + "\n")
                sys.stdout.flush()


def _keep_tail(stream: IO[str], tail: deque[str]) -> None:
    for line in stream:
        tail.append(line[:2000])


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (torchrun passes it to its ranks), then SIGKILL after the grace."""
    with contextlib.suppress(OSError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.wait()


def _read_rank_docs(out_dir: str) -> list[dict[str, Any]]:
    docs = []
    for name in sorted(os.listdir(out_dir)):
        if not (name.startswith("rank-") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(out_dir, name), encoding="utf-8") as handle:
                doc = json.load(handle)
        except (OSError, ValueError) as exc:
            doc = {"rank": _rank_of(name), "error": f"unreadable {name}: {exc}"}
        if isinstance(doc, dict):
            docs.append(doc)
    return docs


def _rank_of(name: str) -> int | None:
    digits = name[len("rank-") : -len(".json")]
    return int(digits) if digits.isdigit() else None


class _Stopped(Exception):
    pass


def _raise_stopped(signum: int, _frame: Any) -> None:
    raise _Stopped(signum)


def run_workers(
    command: Callable[[dict[str, Any]], list[str]],
    params: dict[str, Any],
    deadline: float,
    env: dict[str, str] | None = None,
) -> WorkerRun:
    """Run `command(params with out_dir set)` until it exits or `deadline` (time.monotonic())
    passes; SIGTERM/SIGINT to this task stop the workers first."""
    _remove_stale_out_dirs()
    out_dir = tempfile.mkdtemp(prefix=OUT_DIR_PREFIX)
    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    timed_out = False
    previous = {}
    in_main = threading.current_thread() is threading.main_thread()
    try:
        proc = subprocess.Popen(
            command({**params, "out_dir": out_dir}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=_worker_env(env),
        )
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=_relay, args=(proc.stdout,), daemon=True),
            threading.Thread(target=_keep_tail, args=(proc.stderr, tail), daemon=True),
        ]
        for reader in readers:
            reader.start()
        if in_main:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, _raise_stopped)
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
        except _Stopped:
            _stop(proc)
            raise
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        for reader in readers:
            reader.join(timeout=KILL_GRACE_S)
        return WorkerRun(_read_rank_docs(out_dir), proc.returncode, timed_out, "".join(tail))
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
