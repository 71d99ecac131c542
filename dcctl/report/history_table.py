"""`dcctl history` on a terminal: the recent runs, then one table per metric with a sparkline."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

from rich.table import Table
from rich.text import Text

from dcctl.report.console import stdout_console
from dcctl.results.document import iso_utc
from dcctl.results.history_query import RunRow, Trend

_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 24
MIN_SPAN = 0.05
_RUN_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold yellow",
    "interrupted": "yellow",
    "incomplete": "yellow",
    "running": "cyan",
}


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH) -> str:
    """At most `width` bars, each the mean of an equal share of the values, oldest left; a
    flat series is a flat line at mid height."""
    if not values:
        return ""
    buckets = min(width, len(values))
    means = []
    for bucket in range(buckets):
        share = values[bucket * len(values) // buckets : (bucket + 1) * len(values) // buckets]
        means.append(sum(share) / len(share))
    low, high = min(means), max(means)
    # Noise of a fraction of a percent must not fill the whole height: the scale spans at
    # least MIN_SPAN of the figures' size.
    pad = max(0.0, MIN_SPAN * max(abs(low), abs(high)) - (high - low)) / 2
    low, high = low - pad, high + pad
    if high == low:
        return _BARS[3] * buckets
    top = len(_BARS) - 1
    return "".join(_BARS[round((mean - low) / (high - low) * top)] for mean in means)


def number(value: float) -> str:
    """Four significant figures or so, never an exponent for figures people read."""
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 100:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def change(percent: float | None) -> str:
    return "-" if percent is None else f"{percent:+.1f}%"


def print_history(runs: Sequence[RunRow], trends: Sequence[Trend], shown_runs: int) -> None:
    """Raises OSError if stdout cannot take it."""
    console = stdout_console()
    if runs:
        console.print(_runs_table(runs[:shown_runs], len(runs)))
    for metric, rows in groupby(trends, key=lambda trend: trend.metric):
        console.print(_metric_table(metric, list(rows)), soft_wrap=True)


def _runs_table(runs: Sequence[RunRow], total: int) -> Table:
    more = f" (latest {len(runs)} of {total})" if total > len(runs) else ""
    table = Table(title=Text(f"Runs{more}"), title_justify="left")
    for column in ("Run", "Command", "Started", "Status", "Hosts"):
        table.add_column(column, no_wrap=column != "Command")
    for run in runs:
        command = run.command + (f" {run.playbook}" if run.playbook else "")
        table.add_row(
            Text(run.run_id),
            Text(command),
            Text(iso_utc(run.started_at)),
            Text(run.status, style=_RUN_STYLE.get(run.status, "")),
            Text(str(run.hosts)),
        )
    return table


def _metric_table(metric: str, trends: Sequence[Trend]) -> Text:
    """Aligned columns written by hand: rich's Table measures every cell, which takes seconds
    for the 1,000 rows of a fleet, and these cells never wrap."""
    header = ("Host", "GPU", "n", "Last", "Median", "Min", "Max", "Change", "Trend")
    rows = [
        (
            trend.host,
            "-" if trend.gpu_index is None else str(trend.gpu_index),
            str(trend.n),
            number(trend.last),
            number(trend.median),
            number(trend.minimum),
            number(trend.maximum),
            change(trend.change_pct),
            sparkline(trend.values),
        )
        for trend in trends
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    text = Text(metric + "\n", style="italic")
    text.append(_line(header, widths) + "\n", style="bold")
    text.append("".join(_line(row, widths) + "\n" for row in rows))
    return text


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    # Host left, figures right (so digits line up), the sparkline left.
    host, *figures, trend = (
        cell.ljust(width) if index in (0, len(cells) - 1) else cell.rjust(width)
        for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
    )
    return "  ".join([host, *figures, trend]).rstrip()
