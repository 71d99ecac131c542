"""Builds the run document of DESIGN.md (schema dcctl.run/1) and derives the exit code from it."""

from __future__ import annotations

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
EXIT_HOST_ERROR = 3
EXIT_INTERRUPTED = 130


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


def run_document(
    meta: RunMeta,
    host_documents: Sequence[dict[str, Any]],
    interrupted: bool,
    finished_at: datetime,
) -> dict[str, Any]:
    counts = {
        status: sum(1 for h in host_documents if h["status"] == status)
        for status in ("passed", "failed", "error")
    }
    warnings = sum(1 for h in host_documents for r in h["results"] if r["status"] == "warn")
    if interrupted:
        status = "interrupted"
    elif counts["failed"]:
        status = "failed"
    elif counts["error"]:
        status = "error"
    else:
        status = "passed"
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
        "hosts": list(host_documents),
        "cluster_results": [],
    }


def exit_code(document: dict[str, Any], strict: bool = False) -> int:
    summary = document["summary"]
    if document["status"] == "interrupted":
        return EXIT_INTERRUPTED
    if summary["failed"] or (strict and summary["warnings"]):
        return EXIT_FAILED
    if summary["error"]:
        return EXIT_HOST_ERROR
    return EXIT_OK
