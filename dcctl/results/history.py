"""The history database: every run, step, host, finding and figure, for trends, baselines and
the audit's "what changed".

One SQLite file, `<state_dir>/history.sqlite` (0600), in WAL mode so readers never wait for the
writer. Every write is one short `BEGIN IMMEDIATE` transaction: a host's row, its results and
its figures land together, so a dcctl killed by SIGKILL loses at most the host in flight, and
two dcctl processes writing at once take turns (a 10 s busy timeout) instead of failing.

History is a help, never a reason for a run to fail: every error is a HistoryError with one
line naming the file, for the caller to report and carry on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from dcctl.errors import DcctlError
from dcctl.results import history_query as query
from dcctl.results.history_query import (
    CLUSTER_HOST,
    NODE_WIDE,
    STATUS_CODES,
    Finding,
    RunRow,
    Series,
    Trend,
    seconds,
)
from dcctl.results.history_schema import MIGRATIONS, SCHEMA_VERSION, statements
from dcctl.results.metrics import host_points, result_points

__all__ = ["CLUSTER_HOST", "Finding", "History", "HistoryError", "RunRow", "Series"]

HISTORY_FILE = "history.sqlite"
BUSY_TIMEOUT_S = 10.0
# Runs deleted per transaction by prune: a year's backlog must not hold the write lock for
# seconds while an audit waits to record its hosts.
_PRUNE_BATCH = 100
_FINDING_STATUSES = ("warn", "fail", "error")
_HOST_STATUS_ORDER = ("failed", "error", "passed")
# What each SQLite error means for the person reading the one line, by its error code.
_REMEDIES = {
    "SQLITE_NOTADB": "it is not a dcctl history (or is damaged): move it away and dcctl starts "
    "a new one",
    "SQLITE_CORRUPT": "it is damaged: move it away and dcctl starts a new one",
    "SQLITE_BUSY": f"another dcctl held it for more than {BUSY_TIMEOUT_S:g} s: try again",
    "SQLITE_LOCKED": f"another dcctl held it for more than {BUSY_TIMEOUT_S:g} s: try again",
    "SQLITE_FULL": "the disk is full: free space there",
    "SQLITE_READONLY": "it is read-only: make it writable",
    "SQLITE_CANTOPEN": "it cannot be opened: check the state dir and its permissions",
    "SQLITE_PERM": "permission denied: make it writable",
    "SQLITE_IOERR": "an I/O error: check the disk",
}


class HistoryError(DcctlError):
    """The history cannot be read or written; one line naming the file and what to do."""


class History:
    """One connection to the history file. Usable from several threads of one process (a lock
    serialises them); use one History per process."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._lock = threading.RLock()
        # Interned names -> ids, filled after each commit (a rolled-back id must not stay).
        self._ids: dict[tuple[str, tuple[Any, ...]], int] = {}
        self._fresh_ids: dict[tuple[str, tuple[Any, ...]], int] = {}
        self._runs: dict[str, tuple[int, int]] = {}
        self._hostname = socket.gethostname()

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> History:
        """Creates the file (and the state dir, 0700) when missing, and migrates an older
        schema. Raises HistoryError for a file of a newer dcctl, or one that is unreadable."""
        path = state_dir / HISTORY_FILE
        try:
            _make_private(state_dir, path)
        except OSError as exc:
            raise HistoryError(f"cannot create {path}: {exc.strerror or exc}") from None
        with _reported(path):
            connection = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            history = cls(path, connection)
            try:
                history._configure()
                history._migrate()
            except BaseException:
                connection.close()
                raise
        return history

    @classmethod
    def exists(cls, state_dir: Path) -> bool:
        return (state_dir / HISTORY_FILE).exists()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _configure(self) -> None:
        self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise HistoryError(f"{self.path}: cannot use WAL mode ({mode}): is it on NFS?")
        # In WAL mode NORMAL never corrupts; a power cut may lose the last commits, a killed
        # process loses nothing committed. FULL would fsync once per host.
        self._db.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        version = self._user_version()
        self._refuse_newer(version)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._write():
                # Another dcctl may have migrated while this one waited for the lock; what
                # the file holds is only read under it (a schema half seen is not foreign).
                current = self._user_version()
                self._refuse_newer(current)
                if current >= target:
                    continue
                if current == 0 and self._has_foreign_tables():
                    raise HistoryError(f"{self.path}: not a dcctl history: move it away")
                for statement in statements(MIGRATIONS[target - 1]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {target}")

    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path} was written by a newer dcctl (schema {version}; this dcctl reads up "
                f"to {SCHEMA_VERSION}): upgrade dcctl, or use another --state-dir"
            )

    def _has_foreign_tables(self) -> bool:
        return int(self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]) > 0

    # -- writing ---------------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        command: str,
        playbook: str | None,
        inventory: str,
        started_at: datetime,
        run_dir: Path,
    ) -> None:
        pid = os.getpid()
        with self._write():
            self._db.execute(
                "INSERT INTO runs (run_id, command, playbook, inventory, started_at, status,"
                " run_dir, pid, pid_started, hostname)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
                (run_id, command, playbook, inventory, seconds(started_at), str(run_dir), pid,
                 query.process_started(pid), self._hostname),
            )  # fmt: skip

    def begin_step(
        self, run_id: str, index: int, name: str, command: str, started_at: datetime
    ) -> None:
        with self._write():
            run, _ = self._run(run_id)
            self._db.execute(
                "INSERT OR REPLACE INTO steps (run, idx, name, command, started_at, status)"
                " VALUES (?, ?, ?, ?, ?, 'running')",
                (run, index, name, command, seconds(started_at)),
            )

    def record_host(
        self, run_id: str, step_index: int, host_document: Mapping[str, Any], landed_at: datetime
    ) -> None:
        """The host's row, its results, its figures and its versions, in one transaction."""
        with self._write():
            run, at = self._run(run_id)
            host = self._intern("hosts", str(host_document["name"]))
            self._forget_host_run(run, step_index, host, at)
            error = host_document.get("error") or {}
            facts = host_document.get("facts") or {}
            results = [r for r in host_document.get("results") or [] if isinstance(r, Mapping)]
            host_run = self._insert_host_run(
                (run, step_index, host, str(host_document.get("status")), error.get("kind"),
                 error.get("message"), host_document.get("duration_s"), self._gpu_model(facts),
                 seconds(landed_at), self._passed_set(results), self._versions(facts)),
            )  # fmt: skip
            self._insert_findings(host_run, results)
            self._insert_metrics(host, host_run, at, host_points(host_document))

    def record_cluster_results(
        self, run_id: str, step_index: int, results: Sequence[Mapping[str, Any]]
    ) -> None:
        """Results of jobs spanning hosts, kept as the host CLUSTER_HOST so that their figures
        (cluster busbw) trend and get baselines as a host's do."""
        kept = [r for r in results if isinstance(r.get("id"), str)]
        statuses = {str(result.get("status")) for result in kept}
        status = "failed" if "fail" in statuses else "error" if "error" in statuses else "passed"
        with self._write():
            run, at = self._run(run_id)
            host = self._intern("hosts", CLUSTER_HOST)
            existing = self._db.execute(
                "SELECT id, status FROM host_runs WHERE run = ? AND step = ? AND host = ?",
                (run, step_index, host),
            ).fetchone()
            if existing is None:
                host_run = self._insert_host_run(
                    (run, step_index, host, status, None, None, None, None, at,
                     self._passed_set(kept), None),
                )  # fmt: skip
            else:
                # A step may hand its cluster verdicts over in several calls: add to them.
                host_run = int(existing[0])
                worse = min(status, existing[1], key=_HOST_STATUS_ORDER.index)
                self._db.execute("UPDATE host_runs SET status = ? WHERE id = ?", (worse, host_run))
            self._insert_findings(host_run, kept)
            self._insert_metrics(host, host_run, at, [p for r in kept for p in result_points(r)])

    def add_results(
        self, run_id: str, step_index: int, host_name: str, results: Sequence[Mapping[str, Any]]
    ) -> None:
        """Findings about a host made once its step was over (its baselines, the fleet
        comparison): kept beside the host's own, and a failure among them fails the host.
        Their figures (a baseline, a change) are not trended: they restate the host's own."""
        kept = [r for r in results if isinstance(r.get("id"), str)]
        with self._write():
            run, _ = self._run(run_id)
            host = self._intern("hosts", host_name)
            row = self._db.execute(
                "SELECT id, status FROM host_runs WHERE run = ? AND step = ? AND host = ?",
                (run, step_index, host),
            ).fetchone()
            if row is None:
                raise HistoryError(f"{self.path}: {host_name} has no row in step {step_index}")
            self._insert_findings(int(row[0]), kept)
            if row[1] == "passed" and any(r.get("status") == "fail" for r in kept):
                self._db.execute("UPDATE host_runs SET status = 'failed' WHERE id = ?", (row[0],))

    def finish_step(self, run_id: str, index: int, status: str, finished_at: datetime) -> None:
        with self._write():
            run, _ = self._run(run_id)
            self._db.execute(
                "UPDATE steps SET status = ?, finished_at = ? WHERE run = ? AND idx = ?",
                (status, seconds(finished_at), run, index),
            )

    def finish_run(self, run_id: str, status: str, finished_at: datetime) -> None:
        with self._write():
            run, _ = self._run(run_id)
            self._db.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?",
                (status, seconds(finished_at), run),
            )

    def prune(self, keep_days: float, now: datetime) -> list[Path]:
        """Forgets the runs that started more than `keep_days` before `now` (not one still
        running) and returns their run directories: deleting files is the caller's choice."""
        cutoff = seconds(now - timedelta(days=keep_days))
        with self._reading():
            doomed = query.prunable_runs(self._db, cutoff, self._hostname)
        for start in range(0, len(doomed), _PRUNE_BATCH):
            batch = doomed[start : start + _PRUNE_BATCH]
            with self._write():
                query.delete_runs(self._db, [run for run, _ in batch])
        return [Path(run_dir) for _, run_dir in doomed]

    # -- reading ---------------------------------------------------------------------------

    def runs(
        self, host: str | None = None, since: datetime | None = None, limit: int = 50
    ) -> list[RunRow]:
        """Newest first. A run never finished reads 'running' while its process lives and
        'incomplete' once it is gone (killed, or its machine rebooted)."""
        with self._reading():
            return query.runs(self._db, self._hostname, host, since, limit)

    def series(self, host: str | None, metric: str | None, since: datetime | None) -> list[Series]:
        """Figures per (host, metric, GPU), oldest first; host and metric may be globs."""
        with self._reading():
            return query.series(self._db, host, metric, since)

    def trends(self, host: str | None, metric: str | None, since: datetime | None) -> list[Trend]:
        """`series` summed up per (host, metric, GPU) for a table: n, last, median, min, max and
        the change since the first figure."""
        with self._reading():
            return query.trends(self._db, host, metric, since)

    def baselines(
        self, hosts: Sequence[str], runs: int, before_run_id: str, min_age_s: float = 0.0
    ) -> dict[str, dict[tuple[str, int | None], list[float]]]:
        """Per host and (metric, GPU), the figures of its last `runs` passing runs before
        `before_run_id`, newest first; with `min_age_s`, only runs at least that much older.
        A figure that was itself flagged as a regression is no baseline: a decline must not
        become the norm it is measured against."""
        with self._reading():
            return query.baselines(self._db, hosts, runs, before_run_id, int(min_age_s))

    def previous_run(
        self, command: str, before_run_id: str, playbook: str | None = None
    ) -> str | None:
        with self._reading():
            return query.previous_run(self._db, command, before_run_id, playbook)

    def previous_findings(
        self, command: str, before_run_id: str, playbook: str | None, hosts: Sequence[str]
    ) -> dict[str, list[Finding]]:
        """Per host, the findings of the latest finished run of `command` and `playbook` (the
        same playbook, the built-in one being None) before `before_run_id` that evaluated it;
        hosts no such run reached are absent. Per host, so an audit of a few hosts in between
        does not make every other host's findings look new."""
        with self._reading():
            return query.previous_findings(self._db, command, before_run_id, playbook, hosts)

    def findings(self, run_id: str) -> list[Finding]:
        with self._reading():
            return query.findings(self._db, run_id)

    # -- internals -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock, _reported(self.path):
            yield

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        with self._lock, _reported(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._fresh_ids.clear()
                self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except BaseException:
                # A commit that failed (disk full, I/O error) leaves the transaction open:
                # end it, or every later write fails on "transaction within a transaction".
                self._fresh_ids.clear()
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._ids.update(self._fresh_ids)
            self._fresh_ids.clear()

    def _run(self, run_id: str) -> tuple[int, int]:
        """The run's row id and start (unix seconds)."""
        if run_id not in self._runs:
            row = self._db.execute(
                "SELECT id, started_at FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise HistoryError(f"{self.path}: run {run_id} was never begun")
            self._runs[run_id] = (int(row[0]), int(row[1]))
        return self._runs[run_id]

    def _intern(self, table: str, *values: Any) -> int:
        key = (table, values)
        known = self._ids.get(key) or self._fresh_ids.get(key)
        if known is not None:
            return known
        select, insert = query.INTERN_SQL[table]
        row = self._db.execute(select, values[:1] if table == "checks" else values).fetchone()
        found = int(row[0]) if row else int(self._db.execute(insert, values).lastrowid or 0)
        self._fresh_ids[key] = found
        return found

    def _insert_host_run(self, row: tuple[Any, ...]) -> int:
        cursor = self._db.execute(
            "INSERT INTO host_runs (run, step, host, status, error_kind, error_message,"
            " duration_s, gpu_model, landed_at, passed_set, versions)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        return int(cursor.lastrowid or 0)

    def _forget_host_run(self, run: int, step: int, host: int, at: int) -> None:
        """A host recorded again in the same step (a retry) replaces what was kept of it."""
        row = self._db.execute(
            "SELECT id FROM host_runs WHERE run = ? AND step = ? AND host = ?", (run, step, host)
        ).fetchone()
        if row is not None:
            query.delete_host_run(self._db, int(row[0]), host, at)

    def _gpu_model(self, facts: Mapping[str, Any]) -> int | None:
        gpus = facts.get("gpus")
        if not isinstance(gpus, list):
            return None
        name = "CPU" if not gpus else gpus[0].get("name") if isinstance(gpus[0], Mapping) else None
        return self._intern("gpu_models", str(name)) if name else None

    def _passed_set(self, results: Sequence[Mapping[str, Any]]) -> int | None:
        members = sorted(
            f"{self._check(r)}:{_gpu_of(r) if _gpu_of(r) is not None else ''}:{r['status'][0]}"
            for r in results
            if r.get("status") in ("pass", "skip") and isinstance(r.get("id"), str)
        )
        return self._intern("result_sets", ",".join(members)) if members else None

    def _versions(self, facts: Mapping[str, Any]) -> int | None:
        document = query.versions_of(facts)
        if not document:
            return None
        return self._intern("version_sets", json.dumps(document, sort_keys=True))

    def _check(self, result: Mapping[str, Any]) -> int:
        return self._intern("checks", str(result["id"]), str(result.get("kind") or "check"))

    def _insert_findings(self, host_run: int, results: Sequence[Mapping[str, Any]]) -> None:
        self._db.executemany(
            "INSERT INTO results (host_run, check_id, gpu, status, message) VALUES (?, ?, ?, ?, ?)",
            [
                (host_run, self._check(r), _gpu_of(r), r["status"], str(r.get("message") or ""))
                for r in results
                if r.get("status") in _FINDING_STATUSES and isinstance(r.get("id"), str)
            ],
        )

    def _insert_metrics(self, host: int, host_run: int, at: int, points: Sequence[Any]) -> None:
        rows = []
        for point in points:
            gpu = NODE_WIDE if point.gpu_index is None else point.gpu_index
            series = self._intern("series", host, self._intern("metric_names", point.name), gpu)
            rows.append((series, at, host_run, point.value, STATUS_CODES.get(point.status, 3)))
        self._db.executemany(
            "INSERT OR REPLACE INTO metrics (series, at, host_run, value, status)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )


def _gpu_of(result: Mapping[str, Any]) -> int | None:
    gpu = result.get("gpu")
    index = gpu.get("index") if isinstance(gpu, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


@contextlib.contextmanager
def _reported(path: Path) -> Iterator[None]:
    """SQLite's errors as one line naming the file and what to do about it."""
    try:
        yield
    except sqlite3.Error as exc:
        # Extended codes (SQLITE_IOERR_SHORT_READ) share their primary code's remedy.
        primary = "_".join(str(getattr(exc, "sqlite_errorname", "")).split("_")[:2])
        remedy = _REMEDIES.get(primary)
        raise HistoryError(f"{path}: {exc}" + (f": {remedy}" if remedy else "")) from None


def _make_private(state_dir: Path, path: Path) -> None:
    """The state dir 0700 when this call creates it; the file 0600 (its -wal and -shm
    companions take the file's mode)."""
    if not state_dir.is_dir():
        state_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        os.chmod(state_dir, 0o700)  # mkdir's mode is masked by the umask
    if not path.exists():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
