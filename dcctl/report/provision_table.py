"""`dcctl provision` on the console: one row per host and step, then the summary line."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from dcctl.evaluate.provision import HostProvision, Tally
from dcctl.report.console import stdout_console

_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "would change": "yellow",
    "failed": "bold red",
    "skipped": "dim",
    "error": "bold yellow",
}
# Problems first: a person reading a 1,000-host table looks at the top.
_HOST_ORDER = {"failed": 0, "error": 1, "changed": 2, "ok": 3}
_PROBLEMS = ("failed", "error")


def status_word(status: str, check: bool) -> str:
    """A dry run changed nothing: what it found to do "would change"."""
    return "would change" if check and status == "changed" else status


def summary_line(counts: Tally, check: bool) -> str:
    changed = "would change" if check else "changed"
    line = (
        f"{counts.hosts} host(s): {counts.ok} ok, {counts.changed} {changed}, "
        f"{counts.failed} failed"
    )
    return line + (f", {counts.error} error" if counts.error else "")


def provision_table(
    hosts: Sequence[HostProvision], check: bool, only_problems: bool, detail: bool
) -> Table:
    """`only_problems` (-q): the failed steps and the hosts in error; `detail` (-v): each
    step's commands under its message."""
    table = Table(title_justify="left")
    for column in ("Host", "Step", "Status", "Message"):
        table.add_column(column)
    for host in sorted(hosts, key=lambda h: _HOST_ORDER[h.status]):
        if host.error is not None:
            message = f"{host.error['kind']}: {host.error['message']}"
            table.add_row(Text(host.name), "-", _status("error", check), Text(message))
            continue
        for step in host.steps:
            if only_problems and step.status not in _PROBLEMS:
                continue
            message = step.message
            if detail and step.commands:
                message += "".join(f"\n$ {shlex.join(argv)}" for argv in step.commands)
            # Text, not str: node strings may hold "[...]", which rich reads as markup.
            table.add_row(Text(host.name), Text(step.name), _status(step.status, check),
                          Text(message))  # fmt: skip
    return table


def _status(status: str, check: bool) -> Text:
    word = status_word(status, check)
    return Text(word, style=_STYLE.get(word, ""))


def print_provision(
    hosts: Sequence[HostProvision],
    counts: Tally,
    check: bool,
    only_problems: bool = False,
    detail: bool = False,
) -> None:
    """The table (left out when -q finds nothing to show) and the summary line, on stdout."""
    console = stdout_console()
    table = provision_table(hosts, check, only_problems, detail)
    if table.row_count:
        console.print(table)
    prefix = "check: " if check else ""
    console.print(Text(prefix + summary_line(counts, check)))
