"""`dcctl history [HOST]`: trends per host and metric from the history database."""

from __future__ import annotations

import re
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import typer

from dcctl.cli.options import global_options, reporting_errors
from dcctl.errors import InputError

HISTORY_SCHEMA = "dcctl.history/1"
# Runs listed: all of them in --json (up to this many), the latest few in the table.
_LISTED_RUNS = 50
_SHOWN_RUNS = 10
_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
          "w": timedelta(weeks=1)}  # fmt: skip
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*")
# A century: further back than any history, and inside what a datetime can hold.
_MAX_WINDOW = timedelta(days=36500)


def parse_duration(text: str) -> timedelta:
    match = _DURATION.fullmatch(text)
    window = float(match.group(1)) * _UNITS[match.group(2)] if match else None
    if window is None or window <= timedelta(0) or window > _MAX_WINDOW:
        raise InputError(
            f"--since {text!r}: expected a number and a unit (m, h, d, w), e.g. 30m, 12h, 7d, "
            "4w; at most 36500d"
        )
    return window


def history(
    ctx: typer.Context,
    host: str | None = typer.Argument(
        None, help="A host name or glob (gpu0*). Default: every host.", show_default=False
    ),
    metric: str | None = typer.Option(
        None, "--metric", help="A metric name or glob, e.g. bench.gemm.bf16.tflops or '*busbw*'."
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="How far back: 30m, 12h, 7d, 4w. Default: 30d for a host, 7d for the whole fleet "
        "(one line per host and metric).",
        show_default=False,
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the trends as JSON on stdout; nothing else there."
    ),
    keep_days: float | None = typer.Option(
        None,
        "--keep-days",
        min=0,
        help="Forget runs that started more than N days ago and delete their run directories, "
        "then stop (what was removed is listed on stderr).",
        show_default=False,
    ),
) -> None:
    """Trends per host and metric: the runs that touched the hosts, and per metric its last,
    median, min and max, the change since the first figure and a sparkline.

    Example: dcctl history gpu001 --metric '*busbw*' --since 4w
    """
    options = global_options(ctx)
    now = datetime.now(timezone.utc)
    with reporting_errors():
        window = parse_duration(since or (HOST_WINDOW if host else FLEET_WINDOW))
        if keep_days is not None:
            _prune(options.state_dir, keep_days, now)
            return
        _show(options.state_dir, host, metric, now - window, json_output or options.json)


# How far back the trends reach unless --since says: a month of one host, a week of the fleet
# (a year of hourly audits of 256 hosts is millions of figures; a week of them reads in well
# under a second).
HOST_WINDOW = "30d"
FLEET_WINDOW = "7d"


def _show(
    state_dir: Path, host: str | None, metric: str | None, start: datetime, as_json: bool
) -> None:
    from dcctl.results.document import iso_utc
    from dcctl.results.history import History

    runs: list[Any] = []
    found: list[Any] = []
    if History.exists(state_dir):
        with History.open(state_dir) as store:
            runs = store.runs(host, start, _LISTED_RUNS)
            # JSON carries every point; the table needs only their summary, which the
            # database works out without handing a year of points to Python.
            found = (store.series if as_json else store.trends)(host, metric, start)
    if as_json:
        from dcctl.report.console import print_json

        print_json(_document(host, metric, start, runs, found))
    elif not runs and not found:
        about = f" for {host}" if host else ""
        about += f" matching {metric}" if metric else ""
        typer.echo(f"no history{about} since {iso_utc(start)} in {state_dir}")
    else:
        from dcctl.report.history_table import print_history

        print_history(runs, found, _SHOWN_RUNS)


def _document(
    host: str | None, metric: str | None, start: datetime, runs: list[Any], series: list[Any]
) -> dict[str, Any]:
    from dcctl.results.document import iso_utc
    from dcctl.results.history_query import trend

    trends = [(one, trend(one)) for one in series]
    return {
        "schema": HISTORY_SCHEMA,
        "host": host,
        "metric": metric,
        "since": iso_utc(start),
        "runs": [
            {
                "run_id": run.run_id,
                "command": run.command,
                "playbook": run.playbook,
                "started_at": iso_utc(run.started_at),
                "finished_at": iso_utc(run.finished_at) if run.finished_at else None,
                "status": run.status,
                "hosts": run.hosts,
            }
            for run in runs
        ],
        "series": [
            {
                "host": t.host,
                "metric": t.metric,
                "gpu": t.gpu_index,
                "n": t.n,
                "last": t.last,
                "median": t.median,
                "min": t.minimum,
                "max": t.maximum,
                "change_pct": None if t.change_pct is None else round(t.change_pct, 3),
                "points": [[iso_utc(at), value] for at, value in one.points],
            }
            for one, t in trends
        ],
    }


def _prune(state_dir: Path, keep_days: float, now: datetime) -> None:
    from dcctl.results.history import History

    if not History.exists(state_dir):
        typer.echo(f"no history in {state_dir}: nothing to prune", err=True)
        return
    with History.open(state_dir) as store:
        run_dirs = store.prune(keep_days, now)
    runs_root = (state_dir / "runs").resolve()
    for run_dir in run_dirs:
        # Only a directory of this state dir's runs/: a path kept in the database is not
        # trusted to point anywhere else.
        if run_dir.resolve().parent == runs_root:
            shutil.rmtree(run_dir, onerror=_report_left)
        print(f"removed run {run_dir.name}", file=sys.stderr)
    print(f"removed {len(run_dirs)} run(s) older than {keep_days:g} day(s)", file=sys.stderr)


def _report_left(_function: Any, path: str, exc_info: Any) -> None:
    """A file that cannot be deleted is named, and the rest is still deleted."""
    if not isinstance(exc_info[1], FileNotFoundError):
        print(f"dcctl: could not delete {path}: {exc_info[1]}", file=sys.stderr)
