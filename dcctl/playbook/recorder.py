"""Everything one run keeps, as it happens: each host's document (all its steps so far) in the
run directory, each host's figures in the history, and the step list.

A host's file and its history rows are written the moment the host lands in a step, so a run
killed outright loses only the hosts still in flight. Saving never stops a run: the first
write that failed, to the run directory or to the history, is kept for the caller to report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcctl.playbook.host_merge import merge_host_documents, tag_results
from dcctl.playbook.model import PlaybookStep
from dcctl.results.document import RunMeta, iso_utc, run_document, step_status
from dcctl.results.sources import kept_text, source_path
from dcctl.results.store import RunStore, SaveError

if TYPE_CHECKING:
    from dcctl.results.history import History


@dataclass(frozen=True)
class RunSaved:
    """The finished run: its document and what could not be saved."""

    document: dict[str, Any]
    run_dir: Path
    # The first of the run's files that could not be written, if any.
    save_error: SaveError | None = None
    # run.json is in run_dir (then the run can be read back, whatever else failed).
    run_saved: bool = True
    # The first history write that failed, as one line; None when all were kept (or off).
    history_error: str | None = None


@dataclass
class _Step:
    index: int
    step: PlaybookStep
    started_at: datetime
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    cluster_results: list[dict[str, Any]] = field(default_factory=list)
    finished_at: datetime | None = None
    interrupted: bool = False
    skipped: bool = False


class RunRecorder:
    def __init__(
        self,
        meta: RunMeta,
        state_dir: Path,
        history: History | None,
        sources: Mapping[str, str | None] | None = None,
    ) -> None:
        """`sources`: the inventory's and playbook's text as their loaders read them, kept in
        the run directory as what the run used (a failed write is kept as the run's)."""
        self.meta = meta
        self.store = RunStore(state_dir, meta.run_id)
        for key, text in (sources or {}).items():
            if text is not None:
                self.store.write_text(source_path(key), kept_text(text))
        self.history = history
        self.history_error: str | None = None
        self._hosts: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self._steps: list[_Step] = []
        self._history_call(
            "begin_run",
            meta.run_id,
            meta.command,
            meta.playbook,
            meta.inventory,
            meta.started_at,
            self.store.run_dir,
        )

    @property
    def run_id(self) -> str:
        return self.meta.run_id

    def expect_hosts(self, names: Sequence[str]) -> None:
        """The order hosts are listed in: the inventory's, not the order they land in."""
        for name in names:
            if name not in self._order:
                self._order.append(name)

    def begin_step(self, step: PlaybookStep) -> int:
        index = len(self._steps)
        started = datetime.now(timezone.utc)
        self._steps.append(_Step(index, step, started))
        self._history_call("begin_step", self.run_id, index, step.name, step.kind, started)
        return index

    def skip_step(self, step: PlaybookStep) -> None:
        """A step that never ran: an earlier step failed with `on_fail: stop`, or the run was
        stopped."""
        now = datetime.now(timezone.utc)
        self._steps.append(_Step(len(self._steps), step, now, finished_at=now, skipped=True))

    def host_landed(self, index: int, document: dict[str, Any]) -> dict[str, Any]:
        """Keep one host's document of step `index`; returns the host's merged document."""
        step = self._steps[index]
        document = tag_results(document, step.step.name)
        step.hosts[document["name"]] = document
        self._history_call("record_host", self.run_id, index, document, datetime.now(timezone.utc))
        return self._merge(document)

    def add_results(self, index: int, host_name: str, results: Sequence[dict[str, Any]]) -> None:
        """Findings about a host that only the whole step can make (baselines, the fleet
        comparison), added once the step is over."""
        step = self._steps[index]
        landed = step.hosts.get(host_name)
        if landed is None or not results:
            return
        extra = tag_results(
            {**landed, "error": None, "duration_s": 0.0, "facts": {}, "results": list(results)},
            step.step.name,
        )
        step.hosts[host_name] = merge_host_documents(landed, extra)
        self._history_call("add_results", self.run_id, index, host_name, extra["results"])
        self._merge(extra)

    def cluster_results(self, index: int, results: Sequence[dict[str, Any]]) -> None:
        step = self._steps[index]
        tagged = [{**result, "step": step.step.name} for result in results]
        step.cluster_results.extend(tagged)
        self._history_call("record_cluster_results", self.run_id, index, tagged)

    def add_cluster_results(self, index: int, results: Sequence[dict[str, Any]]) -> None:
        """Cluster findings made once the step is over (the jobs' baselines)."""
        if not results:
            return
        from dcctl.results.history import CLUSTER_HOST

        step = self._steps[index]
        tagged = [{**result, "step": step.step.name} for result in results]
        step.cluster_results.extend(tagged)
        self._history_call("add_results", self.run_id, index, CLUSTER_HOST, tagged)

    def step_cluster_results(self, index: int) -> list[dict[str, Any]]:
        return list(self._steps[index].cluster_results)

    def finish_step(self, index: int, interrupted: bool) -> str:
        """Close step `index`; returns its status."""
        step = self._steps[index]
        step.finished_at = datetime.now(timezone.utc)
        step.interrupted = interrupted
        status = self._step_entry(step)["status"]
        self._history_call("finish_step", self.run_id, index, status, step.finished_at)
        return str(status)

    def host_facts(self, name: str) -> dict[str, Any]:
        """The host's facts over every step so far."""
        return dict((self._hosts.get(name) or {}).get("facts") or {})

    def step_kind(self, index: int) -> str:
        return self._steps[index].step.kind

    def step_hosts(self, index: int) -> dict[str, dict[str, Any]]:
        """The documents hosts had in step `index` alone."""
        return dict(self._steps[index].hosts)

    def finish(self, interrupted: bool) -> RunSaved:
        """Build and save run.json (last), close the run in the history."""
        finished = datetime.now(timezone.utc)
        hosts = [self._hosts[name] for name in self._order if name in self._hosts]
        cluster = [result for step in self._steps for result in step.cluster_results]
        document = run_document(
            self.meta,
            hosts,
            interrupted,
            finished_at=finished,
            cluster_results=cluster,
            steps=[self._step_entry(step) for step in self._steps],
        )
        self.store.write_run(document)
        self._history_call("finish_run", self.run_id, document["status"], finished)
        return RunSaved(
            document=document,
            run_dir=self.store.run_dir,
            save_error=self.store.error,
            run_saved=self.store.run_saved,
            history_error=self.history_error,
        )

    def _merge(self, document: dict[str, Any]) -> dict[str, Any]:
        name = document["name"]
        if name not in self._order:
            self._order.append(name)
        merged = merge_host_documents(self._hosts.get(name), document)
        self._hosts[name] = merged
        self.store.write_host(name, merged)  # a failure is kept in store.error
        return merged

    def _step_entry(self, step: _Step) -> dict[str, Any]:
        hosts = list(step.hosts.values())
        finished = step.finished_at or datetime.now(timezone.utc)
        return {
            "name": step.step.name,
            "command": step.step.kind,
            "status": "skipped"
            if step.skipped
            else step_status(hosts, step.cluster_results, step.interrupted),
            "started_at": iso_utc(step.started_at),
            "finished_at": iso_utc(finished),
            "summary": {
                "hosts": len(hosts),
                **{
                    s: sum(1 for h in hosts if h["status"] == s)
                    for s in ("passed", "failed", "error")
                },
            },
            "on_fail": step.step.on_fail,
            "skipped": step.skipped,
        }

    def history_failed(self, exc: Exception) -> None:
        """A history read or write that failed: kept (the first) for the caller to report."""
        if self.history_error is None:
            self.history_error = f"{type(exc).__name__}: {exc}"

    def _history_call(self, method: str, *args: Any) -> None:
        """A history write; one that fails is remembered, never raised: the run goes on and
        its files still hold every result."""
        if self.history is None:
            return
        try:
            getattr(self.history, method)(*args)
        except Exception as exc:  # sqlite3 and OS errors alike: the history is a side record
            self.history_failed(exc)
