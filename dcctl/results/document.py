"""Builds the run document of DESIGN.md (schema dcctl.run/1) and derives the exit code from it."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from dcctl import __version__
from dcctl.evaluate.result import Result
from dcctl.fleet.outcome import HostOutcome

SCHEMA_ID = "dcctl.run/1"

EXIT_OK = 0
EXIT_FAILED = 1
# 2, usage or input error (nothing was run), is errors.InputError's.
EXIT_HOST_ERROR = 3
# Every host was evaluated and their results were shown as far as the output allowed, but the
# run could not be saved under the state dir (full disk, read-only, no permission, a path
# through a file), or the output itself could not be written (a full disk under `> file`).
EXIT_NOT_SAVED = 4
# Stopped before the end: the partial run is kept. The shell's 128 + signal number, so a script
# tells a person's Ctrl-C (SIGINT) from `timeout`, `kill` or systemd (SIGTERM) and from a
# terminal that closed (SIGHUP).
EXIT_HANGUP = 128 + signal.SIGHUP  # 129
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
_STOPPED_EXITS: dict[int, int] = {
    signal.SIGHUP: EXIT_HANGUP,
    signal.SIGINT: EXIT_INTERRUPTED,
    signal.SIGTERM: EXIT_TERMINATED,
}


@dataclass(frozen=True)
class RunMeta:
    run_id: str
    command: str
    inventory: str
    started_at: datetime
    playbook: str | None = None


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_document(
    outcome: HostOutcome, facts: dict[str, Any], results: Sequence[Result]
) -> dict[str, Any]:
    unjudged = [r for r in results if r.status == "error"]
    error: dict[str, str] | None = None
    if outcome.error is not None:
        status = "error"
        error = {"kind": outcome.error.kind, "message": outcome.error.message}
    elif any(r.status == "fail" for r in results):
        status = "failed"
    elif unjudged:
        # A check that could not be judged must not read as a pass: the host was not
        # fully evaluated, which is what exit code 3 means.
        status = "error"
        error = {
            "kind": "runtime",
            "message": f"{len(unjudged)} check(s) could not be evaluated: {unjudged[0].message}",
        }
    else:
        status = "passed"
    return {
        "name": outcome.host.name,
        "address": outcome.host.address,
        "status": status,
        "error": error,
        "duration_s": round(outcome.duration_s, 3),
        "facts": facts,
        "results": [result.to_json() for result in results],
    }


def step_status(
    host_documents: Sequence[dict[str, Any]],
    cluster_results: Sequence[dict[str, Any]],
    interrupted: bool,
) -> str:
    """passed, failed, error or interrupted: for a run, or for one step of it."""
    hosts = {h["status"] for h in host_documents}
    cluster = {result["status"] for result in cluster_results}
    if interrupted:
        return "interrupted"
    if "failed" in hosts or "fail" in cluster:
        return "failed"
    if "error" in hosts or "error" in cluster:
        return "error"
    return "passed"


def run_document(
    meta: RunMeta,
    host_documents: Sequence[dict[str, Any]],
    interrupted: bool,
    finished_at: datetime,
    cluster_results: Sequence[dict[str, Any]] = (),
    steps: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """The run document; `cluster_results` are the verdicts of jobs spanning hosts (certify,
    cluster allreduce), which decide the run's status as the hosts' results do; `steps` the
    entries of the run's steps, in order."""
    counts = {
        status: sum(1 for h in host_documents if h["status"] == status)
        for status in ("passed", "failed", "error")
    }
    warnings = sum(1 for h in host_documents for r in h["results"] if r["status"] == "warn")
    status = step_status(host_documents, cluster_results, interrupted)
    return {
        "schema": SCHEMA_ID,
        "run_id": meta.run_id,
        "command": meta.command,
        "playbook": meta.playbook,
        "started_at": iso_utc(meta.started_at),
        "finished_at": iso_utc(finished_at),
        "dcctl_version": __version__,
        "inventory": meta.inventory,
        "status": status,
        "summary": {"hosts": len(host_documents), **counts, "warnings": warnings},
        "steps": list(steps),
        "hosts": list(host_documents),
        "cluster_results": list(cluster_results),
    }


def exit_code(
    document: dict[str, Any],
    strict: bool = False,
    stop_signal: int | None = None,
    saved: bool = True,
) -> int:
    """The process's exit code for a run: a stopped run's signal first, then a failed check,
    then a host that could not be evaluated, then a run that could not be saved. What the
    hosts said outranks where it was kept: a cron job on a read-only state dir must still
    learn that a host was unreachable, and the error line on stderr names the state dir."""
    summary = document["summary"]
    cluster = {result["status"] for result in document.get("cluster_results") or []}
    if document["status"] == "interrupted":
        return stopped_exit_code(stop_signal)
    if (
        summary["failed"]
        or "fail" in cluster
        or (strict and (summary["warnings"] or "warn" in cluster))
    ):
        return EXIT_FAILED
    if summary["error"] or "error" in cluster:
        return EXIT_HOST_ERROR
    if not saved:
        return EXIT_NOT_SAVED
    return EXIT_OK


def stopped_exit_code(stop_signal: int | None) -> int:
    """130 for SIGINT (and a stop of unknown cause), 143 for SIGTERM, 129 for SIGHUP."""
    return _STOPPED_EXITS.get(stop_signal or signal.SIGINT, EXIT_INTERRUPTED)
