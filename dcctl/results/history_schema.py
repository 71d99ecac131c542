"""The history database's schema, as an ordered list of migrations.

Migration N (1-based) takes a database from `user_version` N-1 to N; a new database runs them
all. Each is applied in its own transaction, so a dcctl killed mid-upgrade leaves the older
schema intact. A released migration is never edited: a change is a new entry at the end.

Size matters more than convenience here: a year of hourly audits of 256 hosts is 2.2 million
host rows. So names (hosts, metrics, check ids, GPU models) are stored once and referred to by
integer id; a figure is (series, time, host row, value); the results that passed or were
skipped, which repeat identically hour after hour, are kept as a reference to a deduplicated
set; only findings (warn, fail, error) keep their message as a row of their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL UNIQUE,
    command TEXT NOT NULL,
    playbook TEXT,
    inventory TEXT NOT NULL,
    started_at INTEGER NOT NULL,            -- unix seconds, UTC
    finished_at INTEGER,                    -- NULL while running, or when the writer died
    status TEXT NOT NULL,                   -- running | passed | failed | error | interrupted
    run_dir TEXT NOT NULL,
    pid INTEGER NOT NULL,                   -- the writer, to tell a live run from a dead one
    pid_started TEXT,                       -- its start time, so a reused pid is not taken for it
    hostname TEXT NOT NULL
);
CREATE INDEX runs_by_start ON runs (started_at);

CREATE TABLE steps (
    run INTEGER NOT NULL REFERENCES runs (id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    command TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status TEXT NOT NULL,
    PRIMARY KEY (run, idx)
) WITHOUT ROWID;

CREATE TABLE hosts (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE gpu_models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE checks (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kind TEXT NOT NULL);
CREATE TABLE metric_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);

-- The results of a host that passed or were skipped: "check:gpu:status" items, sorted, joined
-- by commas (gpu empty when node-wide, status p or s). Shared by every host row that had them.
CREATE TABLE result_sets (id INTEGER PRIMARY KEY, members TEXT NOT NULL UNIQUE);

CREATE TABLE host_runs (
    id INTEGER PRIMARY KEY,
    run INTEGER NOT NULL REFERENCES runs (id),
    step INTEGER NOT NULL,
    host INTEGER NOT NULL REFERENCES hosts (id),
    status TEXT NOT NULL,                   -- passed | failed | error
    error_kind TEXT,
    error_message TEXT,
    duration_s REAL,
    gpu_model INTEGER REFERENCES gpu_models (id),
    landed_at INTEGER NOT NULL,
    passed_set INTEGER REFERENCES result_sets (id),
    UNIQUE (run, step, host)
);
CREATE INDEX host_runs_by_host ON host_runs (host, run);

-- Findings: results with status warn, fail or error, message kept.
CREATE TABLE results (
    host_run INTEGER NOT NULL REFERENCES host_runs (id),
    check_id INTEGER NOT NULL REFERENCES checks (id),
    gpu INTEGER,
    status TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX results_by_host_run ON results (host_run);

-- gpu is -1 for node-wide figures: NULLs are never equal in a UNIQUE constraint.
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    host INTEGER NOT NULL REFERENCES hosts (id),
    metric INTEGER NOT NULL REFERENCES metric_names (id),
    gpu INTEGER NOT NULL,
    UNIQUE (host, metric, gpu)
);

-- Clustered by series and time: a trend is one range scan. `at` is the run's start, so every
-- host of one run shares the same x. status: 0 pass, 1 warn, 2 fail, 3 error, 4 skip (SQLite
-- stores 0 in no bytes, and almost every figure passes).
CREATE TABLE metrics (
    series INTEGER NOT NULL,
    at INTEGER NOT NULL,
    host_run INTEGER NOT NULL,
    value REAL NOT NULL,
    status INTEGER NOT NULL,
    PRIMARY KEY (series, at, host_run)
) WITHOUT ROWID;
"""

# The versions a drift check compares (driver, kernel, VBIOS, OFED, NCCL, HCA firmware), kept
# per host row. A fleet's versions change a few times a year, so each distinct set is stored
# once.
_V2 = """
CREATE TABLE version_sets (id INTEGER PRIMARY KEY, document TEXT NOT NULL UNIQUE);
ALTER TABLE host_runs ADD COLUMN versions INTEGER REFERENCES version_sets (id);
"""

MIGRATIONS: tuple[str, ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)


def statements(script: str) -> Iterator[str]:
    """The statements of a script one by one: `executescript` commits first, which would split
    a migration over several transactions."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()
