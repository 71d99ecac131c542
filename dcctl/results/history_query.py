"""What the history is read as (runs, series, baselines, findings) and the queries behind it.

Functions of an open connection; `History` holds the connection, its lock and error reporting.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# The host under which results of jobs spanning hosts (certify, cluster allreduce) are kept:
# parentheses cannot appear in a DNS name, so no real host is mistaken for it.
CLUSTER_HOST = "(cluster)"
# The `gpu` of a node-wide series (a UNIQUE constraint never finds two NULLs equal).
NODE_WIDE = -1
STATUS_CODES = {"pass": 0, "warn": 1, "fail": 2, "error": 3, "skip": 4}
# Figures a baseline may be drawn from: those that passed or warned.
_BASELINE_CODES = (STATUS_CODES["pass"], STATUS_CODES["warn"])


@dataclass(frozen=True)
class RunRow:
    run_id: str
    command: str
    playbook: str | None
    started_at: datetime
    finished_at: datetime | None
    # passed | failed | error | interrupted, or running / incomplete when never finished.
    status: str
    hosts: int


@dataclass(frozen=True)
class Series:
    host: str
    metric: str
    gpu_index: int | None
    points: list[tuple[datetime, float]]


@dataclass(frozen=True)
class Finding:
    """A result that is not a pass, or a host that could not be evaluated (result id
    "host"), as an audit compares them from one run to the next."""

    host: str
    result_id: str
    gpu_index: int | None
    status: str
    message: str
    # The step that found it; None for a host that could not be evaluated.
    step: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str, int | None]:
        return (self.host, self.step, self.result_id, self.gpu_index)


@dataclass(frozen=True)
class Trend:
    """A series summed up for a table row: `change_pct` is last against first."""

    host: str
    metric: str
    gpu_index: int | None
    n: int
    last: float
    median: float
    minimum: float
    maximum: float
    change_pct: float | None
    # The figures, oldest first, for a sparkline.
    values: list[float]


def seconds(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"history times are aware UTC datetimes, got naive {moment}")
    return int(moment.timestamp() // 1)


def moment(unix_seconds: int) -> datetime:
    return datetime.fromtimestamp(unix_seconds, timezone.utc)


# -- the writer's process ---------------------------------------------------------------------


def process_started(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell it from a later
    process that was given the same pid; None where /proc cannot say."""
    fields = _proc_stat(pid)
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":
        return False  # killed, not yet reaped by its parent
    return started is None or len(fields) <= 19 or fields[19] == started


def _proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (which may hold spaces and ')')."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text.rpartition(")")[2].split()


# -- what a host row keeps of the facts -------------------------------------------------------


def versions_of(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The versions a drift check compares, those the facts hold."""
    found: dict[str, Any] = {}
    for key in ("driver", "kernel"):
        if isinstance(facts.get(key), str) and facts[key]:
            found[key] = facts[key]
    gpus = facts.get("gpus")
    if isinstance(gpus, list):
        vbios = sorted({str(g["vbios"]) for g in gpus if isinstance(g, Mapping) and g.get("vbios")})
        if vbios:
            found["vbios"] = vbios
    versions = facts.get("versions")
    if isinstance(versions, Mapping):
        for key in ("ofed", "nccl", "hca_firmware"):
            if versions.get(key):
                found[key] = versions[key]
    return found


# -- interning --------------------------------------------------------------------------------

# table -> (select its id by the natural key, insert it): names are stored once, rows refer to
# them by id.
INTERN_SQL = {
    "hosts": ("SELECT id FROM hosts WHERE name = ?", "INSERT INTO hosts (name) VALUES (?)"),
    "gpu_models": (
        "SELECT id FROM gpu_models WHERE name = ?",
        "INSERT INTO gpu_models (name) VALUES (?)",
    ),
    "metric_names": (
        "SELECT id FROM metric_names WHERE name = ?",
        "INSERT INTO metric_names (name) VALUES (?)",
    ),
    "checks": (
        "SELECT id FROM checks WHERE name = ?",
        "INSERT INTO checks (name, kind) VALUES (?, ?)",
    ),
    "result_sets": (
        "SELECT id FROM result_sets WHERE members = ?",
        "INSERT INTO result_sets (members) VALUES (?)",
    ),
    "version_sets": (
        "SELECT id FROM version_sets WHERE document = ?",
        "INSERT INTO version_sets (document) VALUES (?)",
    ),
    "series": (
        "SELECT id FROM series WHERE host = ? AND metric = ? AND gpu = ?",
        "INSERT INTO series (host, metric, gpu) VALUES (?, ?, ?)",
    ),
}

# -- reading ----------------------------------------------------------------------------------

_NAME_MATCHES = "(? IS NULL OR {column} = ? OR {column} GLOB ?)"


def runs(
    db: Any, hostname: str, host: str | None, since: datetime | None, limit: int
) -> list[RunRow]:
    touching = (
        " AND r.id IN (SELECT hr.run FROM host_runs hr JOIN hosts h ON h.id = hr.host"
        " WHERE h.name = ? OR h.name GLOB ?)"
        if host is not None
        else ""
    )
    # The page of runs first, then their host counts: counting for every run of a year
    # before the LIMIT took most of a second.
    rows = db.execute(
        "SELECT r.run_id, r.command, r.playbook, r.started_at, r.finished_at, r.status, r.pid,"
        " r.pid_started, r.hostname,"
        " (SELECT count(DISTINCT hr.host) FROM host_runs hr WHERE hr.run = r.id"
        "  AND hr.host NOT IN (SELECT id FROM hosts WHERE name = ?))"
        " FROM (SELECT * FROM runs r WHERE r.started_at >= ?"
        + touching
        + " ORDER BY r.started_at DESC, r.id DESC LIMIT ?) r"
        " ORDER BY r.started_at DESC, r.id DESC",
        (CLUSTER_HOST, seconds(since) if since else 0, *((host, host) if host else ()), limit),
    ).fetchall()
    return [_run_row(row, hostname) for row in rows]


def _run_row(row: Sequence[Any], hostname: str) -> RunRow:
    run_id, command, playbook, started, finished, status, pid, pid_started, writer, hosts = row
    if status == "running" and writer == hostname and not process_alive(pid, pid_started):
        status = "incomplete"
    return RunRow(
        run_id, command, playbook, moment(started),
        moment(finished) if finished is not None else None, status, int(hosts),
    )  # fmt: skip


def series(db: Any, host: str | None, metric: str | None, since: datetime | None) -> list[Series]:
    chosen = _chosen_series(db, host, metric)
    start = seconds(since) if since else 0
    # Every host of one run shares its start time: one datetime per distinct time, not per point.
    moments: dict[int, datetime] = {}
    found = []
    for series_id, host_name, metric_name, gpu in chosen:
        rows = db.execute(
            "SELECT at, value FROM metrics WHERE series = ? AND at >= ? ORDER BY at, host_run",
            (series_id, start),
        ).fetchall()
        if not rows:
            continue
        points = [(_moment_of(moments, at), value) for at, value in rows]
        found.append(Series(host_name, metric_name, None if gpu == NODE_WIDE else gpu, points))
    return found


def trends(db: Any, host: str | None, metric: str | None, since: datetime | None) -> list[Trend]:
    """What `trend(series)` gives for each series, without a datetime per point: a table of a
    fleet's year reads millions of figures."""
    start = seconds(since) if since else 0
    found = []
    for series_id, host_name, metric_name, gpu in _chosen_series(db, host, metric):
        values = [
            value
            for (value,) in db.execute(
                "SELECT value FROM metrics WHERE series = ? AND at >= ? ORDER BY at, host_run",
                (series_id, start),
            )
        ]
        if values:
            found.append(_trend(host_name, metric_name, None if gpu == NODE_WIDE else gpu, values))
    return found


def _chosen_series(db: Any, host: str | None, metric: str | None) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = db.execute(
        "SELECT s.id, h.name, m.name, s.gpu FROM series s"
        " JOIN hosts h ON h.id = s.host JOIN metric_names m ON m.id = s.metric"
        f" WHERE {_NAME_MATCHES.format(column='h.name')}"
        f" AND {_NAME_MATCHES.format(column='m.name')}"
        " ORDER BY m.name, h.name, s.gpu",
        (host, host, host, metric, metric, metric),
    ).fetchall()
    return rows


def _change(first: float, last: float) -> float | None:
    return (last - first) / abs(first) * 100 if first else None


def _moment_of(known: dict[int, datetime], at: int) -> datetime:
    found = known.get(at)
    if found is None:
        found = known[at] = moment(at)
    return found


def baselines(
    db: Any, hosts: Sequence[str], runs: int, before_run_id: str, min_age_s: int = 0
) -> dict[str, dict[tuple[str, int | None], list[float]]]:
    before = db.execute(
        "SELECT id, started_at FROM runs WHERE run_id = ?", (before_run_id,)
    ).fetchone() or (-1, 2**62)
    latest = before[1] - min_age_s
    found: dict[str, dict[tuple[str, int | None], list[float]]] = {}
    for host in hosts:
        per_key: dict[tuple[str, int | None], list[float]] = {}
        for series_id, metric_name, gpu in db.execute(
            "SELECT s.id, m.name, s.gpu FROM series s JOIN metric_names m ON m.id = s.metric"
            " WHERE s.host = (SELECT id FROM hosts WHERE name = ?)",
            (host,),
        ).fetchall():
            gpu_index = None if gpu == NODE_WIDE else gpu
            values = [
                value
                for (value,) in db.execute(
                    "SELECT m.value FROM metrics m JOIN host_runs hr ON hr.id = m.host_run"
                    " WHERE m.series = ? AND m.at <= ? AND hr.run != ? AND hr.status = 'passed'"
                    f" AND m.status IN {_BASELINE_CODES}"
                    " AND NOT EXISTS (SELECT 1 FROM results r JOIN checks c ON c.id = r.check_id"
                    "   WHERE r.host_run = m.host_run AND c.name = ? AND r.gpu IS ?)"
                    " ORDER BY m.at DESC, m.host_run DESC LIMIT ?",
                    (series_id, latest, before[0], f"baseline.{metric_name}", gpu_index, runs),
                )
            ]
            if values:
                per_key[(metric_name, gpu_index)] = values
        found[host] = per_key
    return found


def previous_run(db: Any, command: str, before_run_id: str, playbook: str | None) -> str | None:
    """The latest run of `command` (and `playbook`, when given) that started before
    `before_run_id` and finished; an interrupted run does not count, as it saw only part of
    the hosts."""
    before = db.execute(
        "SELECT id, started_at FROM runs WHERE run_id = ?", (before_run_id,)
    ).fetchone() or (2**62, 2**62)
    row = db.execute(
        "SELECT run_id FROM runs WHERE command = ? AND playbook IS ?"
        " AND finished_at IS NOT NULL AND status != 'interrupted'"
        " AND (started_at < ? OR (started_at = ? AND id < ?))"
        " ORDER BY started_at DESC, id DESC LIMIT 1",
        (command, playbook, before[1], before[1], before[0]),
    ).fetchone()
    return str(row[0]) if row else None


def previous_findings(
    db: Any, command: str, before_run_id: str, playbook: str | None, hosts: Sequence[str]
) -> dict[str, list[Finding]]:
    before = db.execute(
        "SELECT id, started_at FROM runs WHERE run_id = ?", (before_run_id,)
    ).fetchone() or (2**62, 2**62)
    found: dict[str, list[Finding]] = {}
    cached: dict[str, list[Finding]] = {}
    for host in hosts:
        row = db.execute(
            "SELECT ru.run_id FROM host_runs hr JOIN runs ru ON ru.id = hr.run"
            " WHERE hr.host = (SELECT id FROM hosts WHERE name = ?)"
            " AND ru.command = ? AND ru.playbook IS ?"
            " AND ru.finished_at IS NOT NULL AND ru.status != 'interrupted'"
            " AND (ru.started_at < ? OR (ru.started_at = ? AND ru.id < ?))"
            " ORDER BY ru.started_at DESC, ru.id DESC LIMIT 1",
            (host, command, playbook, before[1], before[1], before[0]),
        ).fetchone()
        if row is None:
            continue
        run_id = str(row[0])
        if run_id not in cached:
            cached[run_id] = findings(db, run_id)
        found[host] = [finding for finding in cached[run_id] if finding.host == host]
    return found


def findings(db: Any, run_id: str) -> list[Finding]:
    rows = db.execute(
        "SELECT h.name, hr.step, c.name, r.gpu, r.status, r.message, st.name, 1"
        " FROM runs ru JOIN host_runs hr ON hr.run = ru.id JOIN results r ON r.host_run = hr.id"
        " JOIN hosts h ON h.id = hr.host JOIN checks c ON c.id = r.check_id"
        " LEFT JOIN steps st ON st.run = hr.run AND st.idx = hr.step WHERE ru.run_id = ?"
        " UNION ALL"
        " SELECT h.name, hr.step, 'host', NULL, 'error', hr.error_message, st.name, 0"
        " FROM runs ru JOIN host_runs hr ON hr.run = ru.id JOIN hosts h ON h.id = hr.host"
        " LEFT JOIN steps st ON st.run = hr.run AND st.idx = hr.step"
        " WHERE ru.run_id = ? AND hr.status = 'error' AND hr.error_message IS NOT NULL"
        " ORDER BY 1, 2, 8",
        (run_id, run_id),
    ).fetchall()
    return [
        Finding(host, result_id, gpu, status, message, step)
        for host, _, result_id, gpu, status, message, step, _ in rows
    ]


# -- pruning ----------------------------------------------------------------------------------


def prunable_runs(db: Any, cutoff: int, hostname: str) -> list[tuple[int, str]]:
    """(row id, run dir) of the runs started before `cutoff`, but not one still running."""
    rows = db.execute(
        "SELECT id, run_dir, status, pid, pid_started, hostname FROM runs WHERE started_at < ?"
        " ORDER BY started_at",
        (cutoff,),
    ).fetchall()
    return [
        (run, run_dir)
        for run, run_dir, status, pid, started, writer in rows
        if status != "running" or (writer == hostname and not process_alive(pid, started))
    ]


def delete_runs(db: Any, run_ids: Sequence[int]) -> None:
    marks = ",".join("?" * len(run_ids))
    low, high = db.execute(
        f"SELECT min(started_at), max(started_at) FROM runs WHERE id IN ({marks})", run_ids
    ).fetchone()
    host_runs = f"SELECT id FROM host_runs WHERE run IN ({marks})"
    # The time range first: metrics are clustered by (series, at), so each series is one
    # short range scan instead of a pass over every figure ever kept.
    db.execute(
        "DELETE FROM metrics WHERE series IN (SELECT id FROM series) AND at BETWEEN ? AND ?"
        f" AND host_run IN ({host_runs})",
        (low, high, *run_ids),
    )
    db.execute(f"DELETE FROM results WHERE host_run IN ({host_runs})", run_ids)
    for table, column in (("host_runs", "run"), ("steps", "run"), ("runs", "id")):
        db.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", run_ids)


def delete_host_run(db: Any, host_run: int, host: int, at: int) -> None:
    db.execute(
        "DELETE FROM metrics WHERE series IN (SELECT id FROM series WHERE host = ?) AND at = ?"
        " AND host_run = ?",
        (host, at, host_run),
    )
    db.execute("DELETE FROM results WHERE host_run = ?", (host_run,))
    db.execute("DELETE FROM host_runs WHERE id = ?", (host_run,))


# -- summing up -------------------------------------------------------------------------------


def trend(series: Series) -> Trend:
    return _trend(series.host, series.metric, series.gpu_index, [v for _, v in series.points])


def _trend(host: str, metric: str, gpu_index: int | None, values: list[float]) -> Trend:
    return Trend(
        host=host,
        metric=metric,
        gpu_index=gpu_index,
        n=len(values),
        last=values[-1],
        median=statistics.median(values),
        minimum=min(values),
        maximum=max(values),
        change_pct=_change(values[0], values[-1]),
        values=values,
    )
