"""What an audit does once its run is over: compare with the previous audit, write the
node_exporter textfile, drain or resume hosts in Slurm, and print what changed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dcctl.audit.changes import (
    Change,
    change_line,
    changes,
    document_findings,
    evaluated,
)
from dcctl.cli.options import GlobalOptions
from dcctl.fleet.signals import StopRequest
from dcctl.playbook.recorder import RunSaved
from dcctl.results.history_query import CLUSTER_HOST, Finding


def _previous_findings(options: GlobalOptions, document: dict[str, Any]) -> list[Finding] | None:
    """The findings each host (and the cluster) had in its own previous finished audit of
    the same playbook; None when there is no history to ask (then everything found is new)."""
    if not options.history:
        return None
    from dcctl.results.history import History, HistoryError

    names = [host["name"] for host in document["hosts"]] + [CLUSTER_HOST]
    try:
        with History.open(options.state_dir) as history:
            per_host = history.previous_findings(
                "audit", document["run_id"], document["playbook"], names
            )
    except HistoryError:
        return None  # the run already reported why the history is not kept
    return [finding for found in per_host.values() for finding in found]


def _first_failure(host: dict[str, Any]) -> str:
    """The drain reason's text: the failed check, then what it said. The check (and GPU)
    come first, so the same failure reads the same from one audit to the next even where
    its message carries a fresh figure."""
    for result in host["results"]:
        if result.get("status") == "fail":
            gpu = result.get("gpu")
            on = f" GPU {gpu.get('index')}" if isinstance(gpu, dict) else ""
            return f"{result['id']}{on}: {result.get('message') or ''}"
    return "failed"


class AuditReport:
    def __init__(
        self,
        options: GlobalOptions,
        saved: RunSaved,
        stop: StopRequest,
        duration_s: float,
        now: datetime,
    ) -> None:
        self.options = options
        self.stop = stop
        self.saved = saved
        self.document = saved.document
        self.duration_s = duration_s
        self.now = now
        # Lines for stdout beyond the changes (Slurm actions), and problems for stderr.
        self.actions: list[str] = []
        self.problems: list[str] = []
        self.output_lost = False
        self.changes: Sequence[Change] = []
        if self.document["status"] == "interrupted":
            return  # a partial audit tells nothing about what went away, nor what is new
        previous = _previous_findings(options, self.document)
        if previous is None:
            self.problems.append(
                "no history to compare with: every finding is listed, not only what changed"
            )
        current = document_findings(self.document)
        self.changes = changes(previous or [], current, evaluated(self.document))

    def write_textfile(self, path: Path | None) -> None:
        if path is None:
            return
        from dcctl.report.prometheus import write_textfile

        try:
            write_textfile(path, self.document, self.duration_s, self.now)
        except OSError as exc:
            self.problems.append(f"cannot write the textfile {path}: {exc.strerror or exc}")
            self.output_lost = True

    def drain(self, dry_run: bool) -> None:
        """Drain the hosts that failed, resume those that passed; hosts that could not be
        evaluated are left as they are (Slurm itself notices a node that is down)."""
        from dcctl.audit.slurm_sync import sync_slurm

        hosts = self.document["hosts"]
        failing = {h["name"]: _first_failure(h) for h in hosts if h["status"] == "failed"}
        # A host passes again only when every step ran: one that passed the first step of a
        # playbook whose later steps were skipped may still have what it was drained for.
        complete = not any(step["skipped"] for step in self.document["steps"])
        passing = [h["name"] for h in hosts if h["status"] == "passed"] if complete else []
        lines, problems = sync_slurm(failing, passing, dry_run, should_stop=self.stop.is_set)
        self.actions.extend(lines)
        self.problems.extend(problems)

    def show(self) -> bool:
        """Print what changed (or the whole run with -v, or the run document with --json);
        False when the output, or the textfile, was lost."""
        from dcctl.report.console import print_error, print_notice, written

        if self.document["status"] == "interrupted":
            where = f"; the partial run is in {self.saved.run_dir}" if self.saved.run_saved else ""
            print_notice(f"audit stopped before the end{where}")
        if not written(self._print):
            return False
        for problem in self.problems:
            print_error(problem)
        return not self.output_lost

    def _print(self) -> None:
        from dcctl.report.console import print_json, print_run

        if self.options.json:
            print_json(self.document)
            return
        if self.options.verbose:
            run_dir = str(self.saved.run_dir) if self.saved.run_saved else None
            print_run(self.document, run_dir, only_problems=False, detail=True)
        for line in [change_line(change) for change in self.changes] + self.actions:
            print(line, flush=False)
