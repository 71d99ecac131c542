"""Console output: the per-host table of a run, generic tables, one-line errors. Only stderr for
human text when --json owns stdout."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dcctl.evaluate.check import summarize_facts
from dcctl.report.document_view import HOST_ORDER, STATUS_ORDER

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
_FINDING_ORDER = {"fail": 0, "error": 1, "warn": 2}
_CLUSTER_WORDS = {"pass": "passed", "fail": "failed", "error": "error", "warn": "warning",
                  "skip": "skipped"}  # fmt: skip
# One pair of a pairs sweep is not a verdict: the sweep's summary result is.
_PAIR_ID = "cluster.allreduce.pair"
_PAIRS_ID = "cluster.allreduce.pairs"


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich's own answer to a reader that left (`| head`) is exit code 1, which reads as
        "a check failed": the caller decides instead."""
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))


def stdout_console() -> Console:
    return _Console(highlight=False, soft_wrap=False)


def stderr_console() -> Console:
    return _Console(stderr=True, highlight=False)


def print_json(document: Any) -> None:
    """Raises OSError if stdout cannot take it all (flushed here, not at exit, to know)."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = Table(title=Text(title) if title else None, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not str: node and inventory strings may hold "[...]", which rich reads as markup.
        table.add_row(*(Text(cell) for cell in row))
    stdout_console().print(table)


def print_error(message: str) -> None:
    _print_stderr(Text(f"dcctl: error: {message}", style="bold red"))


def print_notice(message: str) -> None:
    _print_stderr(Text(f"dcctl: {message}", style="bold yellow"))


def _print_stderr(text: Text) -> None:
    # A terminal that closed (SIGHUP) fails every write: there is no one left to tell.
    with contextlib.suppress(OSError):
        stderr_console().print(text, soft_wrap=True)  # one line, however long


def written(write: Callable[[], object]) -> bool:
    """Run `write`, which prints to stdout; False, after one error line, when stdout could
    not take it (a full disk under `> file`). A reader that left (`| head`) is no failure: it
    had what it wanted."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
    except OSError as exc:
        discard_stdout()
        print_error(f"cannot write the output: {exc.strerror or exc}")
        return False
    return True


def discard_stdout() -> None:
    """After stdout failed (a closed pipe or terminal, a full disk under `> file`), send what
    is still buffered for it, and any later output, nowhere: the flush at exit would fail
    again, with a traceback and exit code 120."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def print_run(
    document: dict[str, Any],
    run_dir: str | None,
    only_problems: bool = False,
    detail: bool = False,
    stopped_by: str | None = None,
) -> None:
    """The hosts table and a summary line; `run_dir` None: the run was not saved. Raises
    OSError if stdout cannot be written."""
    hosts = sorted(document["hosts"], key=lambda h: HOST_ORDER.get(h["status"], 3))
    if only_problems:
        hosts = [host for host in hosts if host["status"] != "passed"]
    # certify and the jobs across nodes are benchmarks too: the GPUs a host ran on tell more
    # than its OS and kernel, which those runs do not read.
    bench = document.get("command") in ("bench", "certify")
    kinds = {step.get("command") for step in document.get("steps") or [] if not step.get("skipped")}
    console = stdout_console()
    if len(document.get("steps") or []) > 1:
        console.print(_steps_table(document["steps"]))
    if hosts:
        console.print(_bench_hosts_table(hosts) if bench else _check_hosts_table(hosts))
    if bench or "bench" in kinds:
        from dcctl.report.bench_tables import bench_tables, sweep_tables

        for table in bench_tables(hosts) + (sweep_tables(hosts) if detail else []):
            console.print(table)
    if detail:
        for host in hosts:
            console.print(_results_table(host))
    cluster = _shown_cluster_results(document, only_problems)
    if cluster:
        from dcctl.report.cluster_panel import print_cluster_results

        # Last before the summary: a cluster verdict is what the run was for.
        print_cluster_results(console, cluster, detail)
    console.print(_summary_line(document, run_dir, stopped_by))


def _steps_table(steps: list[dict[str, Any]]) -> Table:
    """A playbook's steps: what each found, at a glance, before the hosts."""
    table = Table(title=Text("Steps"), title_justify="left")
    for column in ("Step", "Command", "Status", "Hosts passed", "failed", "error"):
        table.add_column(column)
    for step in steps:
        summary = step.get("summary") or {}
        status = str(step.get("status"))
        table.add_row(
            Text(str(step.get("name"))),
            Text(str(step.get("command"))),
            Text(status, style=_STEP_STYLE.get(status, "")),
            *(Text(str(summary.get(key, 0))) for key in ("passed", "failed", "error")),
        )
    return table


_STEP_STYLE = {"passed": "green", "failed": "bold red", "error": "yellow", "skipped": "dim"}


def _shown_cluster_results(document: dict[str, Any], only_problems: bool) -> list[dict[str, Any]]:
    results = [r for r in document.get("cluster_results") or [] if isinstance(r, dict)]
    return [r for r in results if r.get("status") != "pass"] if only_problems else results


def _check_hosts_table(hosts: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False)
    # Name and status are never cut; the rest fold so nothing is hidden on a narrow terminal.
    table.add_column("Host", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    for column in ("OS", "Kernel", "Driver", "CUDA", "GPUs", "Findings"):
        table.add_column(column, overflow="fold")
    for host in hosts:
        summary = summarize_facts(host["facts"]) if host["facts"] else {}
        table.add_row(
            Text(host["name"]),
            Text(host["status"], style=_STATUS_STYLE.get(host["status"], "")),
            *(Text(summary.get(key, "-")) for key in ("os", "kernel", "driver", "cuda", "gpus")),
            _findings(host),
        )
    return table


def _bench_hosts_table(hosts: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False)
    table.add_column("Host", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Ran on", overflow="fold")
    table.add_column("Findings", overflow="fold")
    for host in hosts:
        facts = host["facts"] or {}
        pre = facts.get("preflight") or {}
        gpus = facts.get("gpus") or []
        names = sorted({str(gpu.get("name")) for gpu in gpus})
        ran_on = f"{len(gpus)} x {', '.join(names)}" if gpus else "CPU" if facts else "-"
        if pre.get("torch"):
            ran_on += f"; torch {pre['torch']}"
        table.add_row(
            Text(host["name"]),
            Text(host["status"], style=_STATUS_STYLE.get(host["status"], "")),
            Text(ran_on),
            _findings(host),
        )
    return table


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


def _summary_line(document: dict[str, Any], run_dir: str | None, stopped_by: str | None) -> Text:
    summary = document["summary"]
    line = Text(f"{summary['hosts']} host(s): ")
    line.append(f"{summary['passed']} passed", style="green")
    line.append(", ")
    line.append(f"{summary['failed']} failed", style="red" if summary["failed"] else "")
    line.append(", ")
    line.append(f"{summary['error']} error", style="yellow" if summary["error"] else "")
    line.append(f", {summary['warnings']} warning(s)")
    _append_cluster_counts(line, document.get("cluster_results") or [])
    if document["status"] == "interrupted":
        by = f" by {stopped_by}" if stopped_by else ""
        line.append(f" (interrupted{by})", style="bold yellow")
    if run_dir is None:
        line.append(f"  run {document['run_id']} not saved", style="bold red")
    else:
        line.append(f"  run {document['run_id']} in {run_dir}", style="dim")
    return line


def _append_cluster_counts(line: Text, cluster_results: list[Any]) -> None:
    """ "; cluster: certify failed", or "certify 1 passed, 1 failed" for several groups."""
    results = [r for r in cluster_results if isinstance(r, dict)]
    if any(r.get("id") == _PAIRS_ID for r in results):
        results = [r for r in results if r.get("id") != _PAIR_ID]
    counts: dict[str, Counter[str]] = {}
    for result in results:
        counts.setdefault(str(result.get("id")), Counter())[str(result.get("status"))] += 1
    for index, (result_id, by_status) in enumerate(counts.items()):
        line.append("; cluster: " if index == 0 else ", ")
        line.append(f"{result_id} ")
        ordered = sorted(by_status.items(), key=lambda item: STATUS_ORDER.get(item[0], 5))
        words = [_CLUSTER_WORDS.get(status, status) for status, _ in ordered]
        if by_status.total() > 1:
            words = [f"{count} {word}" for (_, count), word in zip(ordered, words, strict=True)]
        line.append(", ".join(words), style=_STATUS_STYLE.get(ordered[0][0], ""))
