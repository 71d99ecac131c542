"""Console output: the per-host table of a run, generic tables, one-line errors. Only stderr for
human text when --json owns stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dcctl.evaluate.check import summarize_facts

_STATUS_STYLE = {
    "passed": "green",
    "failed": "bold red",
    "error": "bold yellow",
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "skip": "dim",
}
# Failures first: a person reading a 1,000-row table looks at the top.
_STATUS_ORDER = {"failed": 0, "error": 1, "passed": 2}
_FINDING_ORDER = {"fail": 0, "error": 1, "warn": 2}


def stdout_console() -> Console:
    return Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=Text(title) if title else None, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not str: node and inventory strings may hold "[...]", which rich reads as markup.
        table.add_row(*(Text(cell) for cell in row))
    stdout_console().print(table)


def print_error(message: str) -> None:
    stderr_console().print(Text(f"dcctl: error: {message}", style="bold red"))


def print_run(
    document: dict[str, Any], run_dir: str, only_problems: bool = False, detail: bool = False
) -> None:
    table = Table(show_lines=False)
    # Name and status are never cut; the rest fold so nothing is hidden on a narrow terminal.
    table.add_column("Host", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for column in ("OS", "Kernel", "Driver", "CUDA", "GPUs", "Findings"):
        table.add_column(column, overflow="fold")
    hosts = sorted(document["hosts"], key=lambda h: _STATUS_ORDER.get(h["status"], 3))
    if only_problems:
        hosts = [host for host in hosts if host["status"] != "passed"]
    for host in hosts:
        summary = summarize_facts(host["facts"]) if host["facts"] else {}
        table.add_row(
            Text(host["name"]),
            Text(host["status"], style=_STATUS_STYLE.get(host["status"], "")),
            *(Text(summary.get(key, "-")) for key in ("os", "kernel", "driver", "cuda", "gpus")),
            _findings(host),
        )
    console = stdout_console()
    if hosts:
        console.print(table)
    if detail:
        for host in hosts:
            console.print(_results_table(host))
    console.print(_summary_line(document, run_dir))


def _results_table(host: dict[str, Any]) -> Table:
    table = Table(title=Text(host["name"]), title_justify="left")
    for column in ("Check", "Status", "Observed", "Expected", "Message"):
        table.add_column(column, overflow="fold")
    for result in host["results"]:
        table.add_row(
            Text(result["id"]),
            Text(result["status"], style=_STATUS_STYLE.get(result["status"], "")),
            Text(_display(result.get("observed"))),
            Text(_display(result.get("expected"))),
            Text(result["message"]),
        )
    return table


def _display(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def _findings(host: dict[str, Any]) -> Text:
    text = Text()
    if host["error"] is not None:
        text.append(f"{host['error']['kind']}: {host['error']['message']}", style="yellow")
    problems = [r for r in host["results"] if r["status"] in _FINDING_ORDER]
    for result in sorted(problems, key=lambda r: _FINDING_ORDER[r["status"]]):
        if text:
            text.append("\n")
        text.append(result["message"], style=_STATUS_STYLE.get(result["status"], ""))
    return text


def _summary_line(document: dict[str, Any], run_dir: str) -> Text:
    summary = document["summary"]
    line = Text(f"{summary['hosts']} host(s): ")
    line.append(f"{summary['passed']} passed", style="green")
    line.append(", ")
    line.append(f"{summary['failed']} failed", style="red" if summary["failed"] else "")
    line.append(", ")
    line.append(f"{summary['error']} error", style="yellow" if summary["error"] else "")
    line.append(f", {summary['warnings']} warning(s)")
    if document["status"] == "interrupted":
        line.append(" (interrupted)", style="bold yellow")
    line.append(f"  run {document['run_id']} in {run_dir}", style="dim")
    return line
