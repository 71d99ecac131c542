"""`dcctl history` over a year of hourly audits of 256 hosts: how long it takes to answer.

Generates the history straight into the schema (8,760 runs x 256 hosts x 4 figures: 2.2
million host rows, 9 million figures; an hour through the API, a minute in SQL), then
times the real command line in a fresh interpreter, as a person or a script runs it:

    python tests/perf/history_scale.py [--hosts 256] [--days 365] [--runs 3] [--out FILE]

Prints one JSON document. The target: each command under 1 s. See tests/perf/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dcctl.results.history import History

# (metric, gpu index or -1 for node-wide, typical value): what an hourly quick audit trends.
METRICS = (
    ("bench.gemm.bf16.tflops", 0, 780.0),
    ("bench.gemm.bf16.efficiency", 0, 0.79),
    ("bench.allreduce.busbw_gbs", -1, 360.0),
    ("bench.allreduce.algbw_gbs", -1, 190.0),
)
# The real command line, as `dcctl` runs it.
LAUNCHER = """
import sys
from dcctl.cli import main
sys.argv[0] = "dcctl"
main.app()
"""


def generate(state: Path, hosts: int, days: int) -> dict[str, Any]:
    History.open(state).close()  # the schema, created and migrated as dcctl does it
    db = sqlite3.connect(state / "history.sqlite", isolation_level=None)
    db.execute("PRAGMA synchronous = OFF")
    now = int(time.time()) // 3600 * 3600
    hours = days * 24
    started = time.perf_counter()
    db.execute("BEGIN")
    db.executemany("INSERT INTO hosts (id, name) VALUES (?, ?)",
                   [(h + 1, f"gpu{h:04}") for h in range(hosts)])  # fmt: skip
    db.executemany("INSERT INTO metric_names (id, name) VALUES (?, ?)",
                   [(m + 1, name) for m, (name, _, _) in enumerate(METRICS)])  # fmt: skip
    db.executemany(
        "INSERT INTO series (id, host, metric, gpu) VALUES (?, ?, ?, ?)",
        [(_series(h, m), h + 1, m + 1, gpu) for h in range(hosts)
         for m, (_, gpu, _) in enumerate(METRICS)],
    )  # fmt: skip
    db.execute("INSERT INTO result_sets (id, members) VALUES (1, '1::p,2::p,3:0:p')")
    db.execute('INSERT INTO version_sets (id, document) VALUES (1, \'{"driver": "550.54.15"}\')')
    # The bulk in SQL, in series order (each series appended, as its clustered key wants):
    # Python would spend minutes building 9 million tuples.
    first = now - hours * 3600
    db.execute(
        "INSERT INTO runs (id, run_id, command, playbook, inventory, started_at, finished_at,"
        " status, run_dir, pid, pid_started, hostname)"
        f" WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r WHERE n < {hours - 1})"
        " SELECT n + 1, printf('run-%05d', n), 'audit', 'audit.yaml', 'fleet.yaml',"
        f" {first} + n * 3600, {first} + n * 3600 + 90, 'passed', printf('/x/run-%05d', n), 1,"
        " NULL, 'ctl' FROM r"
    )
    db.execute(
        "INSERT INTO host_runs (id, run, step, host, status, duration_s, landed_at, passed_set,"
        f" versions) SELECT (r.id - 1) * {hosts} + h.id, r.id, 0, h.id, 'passed', 12.5,"
        " r.started_at + 60, 1, 1 FROM runs r CROSS JOIN hosts h ORDER BY r.id, h.id"
    )
    typical = " ".join(f"WHEN {m + 1} THEN {value}" for m, (_, _, value) in enumerate(METRICS))
    # Host gpu0007 sinks 10 % over the window; every figure wobbles by up to 1 %.
    db.execute(
        "INSERT INTO metrics (series, at, host_run, value, status)"
        f" SELECT s.id, r.started_at, (r.id - 1) * {hosts} + s.host,"
        f" (CASE s.metric {typical} END)"
        f" * (CASE WHEN s.host = 8 THEN 1 - 0.1 * (r.id - 1) / {hours} ELSE 1 END)"
        " * (1 + 0.01 * (((r.id * 7 + s.host * 13 + s.metric) % 11) - 5) / 5.0), 0"
        " FROM series s CROSS JOIN runs r ORDER BY s.id, r.started_at"
    )
    db.execute("COMMIT")
    generated = time.perf_counter() - started
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return {"generate_s": round(generated, 1), "runs": hours, "host_rows": hours * hosts,
            "figures": hours * hosts * len(METRICS)}  # fmt: skip


def _series(host: int, metric: int) -> int:
    return host * len(METRICS) + metric + 1


def time_command(state: Path, args: list[str], runs: int) -> dict[str, Any]:
    argv = [sys.executable, "-c", LAUNCHER, "--state-dir", str(state), *args]
    env = {**os.environ, "COLUMNS": "200"}
    seconds, lines = [], 0
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
        seconds.append(time.perf_counter() - started)
        lines = proc.stdout.count("\n")
    return {"args": args, "median_s": round(statistics.median(seconds), 3),
            "runs_s": [round(s, 3) for s in seconds], "stdout_lines": lines}  # fmt: skip


def time_record_host(state: Path, hosts: int) -> dict[str, Any]:
    """What one host landing costs a run on this year-old history (one transaction each)."""
    document = {"name": "gpu0001", "status": "passed", "error": None, "duration_s": 1.0,
                "facts": {"gpus": [{"name": "NVIDIA H100 80GB HBM3", "vbios": "96"}]},
                "results": [{"id": name.rsplit(".", 1)[0], "kind": "bench", "status": "pass",
                             "message": "ok", "metrics": {name.rsplit(".", 1)[1]: value}}
                            for name, _, value in METRICS]}  # fmt: skip
    now = datetime.now(timezone.utc)
    with History.open(state) as history:
        history.begin_run("perf-now", "audit", None, "fleet.yaml", now, state / "runs" / "x")
        started = time.perf_counter()
        for host in range(hosts):
            history.record_host("perf-now", 0, {**document, "name": f"gpu{host:04}"}, now)
        elapsed = time.perf_counter() - started
        history.finish_run("perf-now", "passed", now + timedelta(seconds=1))
    return {"hosts": hosts, "ms_per_host": round(elapsed / hosts * 1000, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=256)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each command")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the generated state dir")
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dcctl-history-scale-"))
    state = work / "state"
    try:
        report: dict[str, Any] = {"hosts": options.hosts, "days": options.days}
        report.update(generate(state, options.hosts, options.days))
        report["db_mb"] = round((state / "history.sqlite").stat().st_size / 1e6, 1)
        report["history_all_default_window"] = time_command(state, ["history"], options.runs)
        report["history_one_host_365d"] = time_command(
            state, ["history", "gpu0007", "--since", "365d"], options.runs
        )
        report["history_json_one_host_365d"] = time_command(
            state, ["history", "gpu0007", "--since", "365d", "--json"], options.runs
        )
        report["record_host"] = time_record_host(state, min(options.hosts, 1000))
        report["target_s"] = 1.0
        report["state_dir"] = str(state) if options.keep else None
    finally:
        if not options.keep:
            subprocess.run(["rm", "-rf", str(work)], check=False)
    text = json.dumps(report, indent=2)
    print(text)
    if options.out:
        options.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
