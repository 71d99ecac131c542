"""`dcctl report [RUN]`: render a stored run (table, HTML, JSON, JUnit, Markdown), or compare
two."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from dcctl.cli.options import GlobalOptions, global_options, reporting_errors
from dcctl.errors import InputError

if TYPE_CHECKING:
    from dcctl.report.run_compare import RunComparison

# As dcctl.results.document.EXIT_NOT_SAVED (not imported: `dcctl --help` loads every command).
EXIT_NOT_SAVED = 4
FORMATS = ("table", "html", "json", "junit", "markdown")
# What a comparison of two runs can be shown as: JUnit has no place for a change in a figure.
COMPARISON_FORMATS = ("table", "json", "markdown")
_NAMES = {
    "html": "HTML",
    "junit": "JUnit XML",
    "markdown": "Markdown",
    "json": "JSON",
    "table": "table",
}


def report(
    ctx: typer.Context,
    run: str = typer.Argument(
        "latest",
        metavar="RUN",
        help="A run id, a unique prefix of one, latest, or a path to a run directory or a "
        "run.json.",
    ),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        metavar="FORMAT",
        help="table (the console view; -v adds each host's checks), html (one self-contained "
        "page with plots, for signing and printing), json (the run document), junit or "
        "markdown. Default: as -o's extension says (.html, .xml, .md, .json), else table "
        "(json with the global --json).",
        show_default=False,
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        metavar="FILE",
        help="Write the report to FILE (whole or not at all) instead of stdout; not "
        "writable: exit 4.",
        show_default=False,
    ),
    against: str | None = typer.Option(
        None,
        "--against",
        metavar="RUN_B",
        help="Compare RUN (after) with RUN_B (before): per host and metric the change, status "
        "changes, and findings that appeared or cleared. Formats: table, json, markdown.",
        show_default=False,
    ),
) -> None:
    """Render a stored run: the console table, one self-contained HTML page with plots (opens
    offline, prints to PDF), its JSON document, JUnit XML for CI, or Markdown for tickets and
    chat. A run killed before it wrote run.json is rebuilt from its
    host files (a notice on stderr says so). Exit 0 once the report is out, whatever the run
    found; 2 for an unknown run or a bad option.

    Examples:

      dcctl report                        # the latest run, as a table

      dcctl -v report 20260301T0930       # by id prefix, with every check

      dcctl report latest -o results.xml  # JUnit for CI

      dcctl report latest --format html -o rack1.html   # the acceptance page

      dcctl report latest --format markdown -o rack1.md

      dcctl report AFTER_ID --against BEFORE_ID
    """
    options = global_options(ctx)
    with reporting_errors():
        chosen = _format(fmt, output, options.json, comparing=against is not None)
        code = _report(options, run, chosen, output, against)
    raise typer.Exit(code)


def _format(fmt: str | None, output: Path | None, json_output: bool, comparing: bool) -> str:
    """The format asked for: --format, else -o's extension, else json (--json) or table."""
    allowed = COMPARISON_FORMATS if comparing else FORMATS
    if fmt is None:
        if output is not None:
            return _format_of_file(output, comparing)
        return "json" if json_output else "table"
    chosen = fmt.lower()
    if chosen not in allowed:
        what = "a comparison (--against)" if comparing else "a run"
        raise InputError(f"--format {fmt!r}: {what} renders as {', '.join(allowed)}")
    if chosen == "table" and output is not None:
        raise InputError(
            f"--format table is for the terminal: write {output} as html, junit, markdown or json "
            "(or leave --format out and let the extension choose)"
        )
    return chosen


def _format_of_file(output: Path, comparing: bool) -> str:
    from dcctl.report.report_files import format_for

    chosen = format_for(output)
    if comparing and chosen not in COMPARISON_FORMATS:
        raise InputError(f"{output}: a comparison (--against) is written as .md or .json")
    return chosen


def _report(
    options: GlobalOptions, ref: str, fmt: str, output: Path | None, against: str | None
) -> int:
    from dcctl.results.load import find_run

    after = find_run(options.state_dir, ref)
    before = find_run(options.state_dir, against) if against is not None else None
    _notice(after.notice)
    if before is not None:
        _notice(before.notice)
        from dcctl.report.run_compare import compare_runs

        comparison = compare_runs(before.document, after.document)
        if fmt == "table":
            return _print_comparison(comparison)
        text, what = _comparison_text(comparison, fmt), "comparison"
    elif fmt == "table":
        return _print_table(options, after.document, after.run_dir)
    else:
        from dcctl.report.report_files import render

        text, what = render(after.document, fmt, after.run_dir), "report"
    if output is None:
        return _print_text(text)
    return _write(output, text, f"{_NAMES[fmt]} {what} of run {after.document['run_id']}")


def _comparison_text(comparison: RunComparison, fmt: str) -> str:
    from dcctl.report.run_compare import comparison_json, comparison_markdown

    if fmt == "markdown":
        return comparison_markdown(comparison)
    import json

    return json.dumps(comparison_json(comparison), indent=2) + "\n"


def _print_comparison(comparison: RunComparison) -> int:
    """The comparison's tables on the console: what changed first, then every figure."""
    from dcctl.report.console import print_table, written
    from dcctl.report.run_compare import comparison_tables, summary_line

    after, before = comparison.after, comparison.before

    def show() -> None:
        print(f"run {after.run_id} ({after.status}) against {before.run_id} ({before.status})")
        for title, columns, rows in comparison_tables(comparison):
            print_table(title, columns, rows)
        print(summary_line(comparison))

    return 0 if written(show) else EXIT_NOT_SAVED


def _notice(notice: str | None) -> None:
    if notice is not None:
        from dcctl.report.console import print_notice

        print_notice(notice)


def _print_table(options: GlobalOptions, document: dict[str, Any], run_dir: Path) -> int:
    from dcctl.report.console import print_run, written

    def show() -> None:
        print_run(document, str(run_dir), only_problems=options.quiet, detail=options.verbose)

    return 0 if written(show) else EXIT_NOT_SAVED


def _print_text(text: str) -> int:
    from dcctl.report.console import written

    ok = written(lambda: sys.stdout.write(text if text.endswith("\n") else text + "\n"))
    return 0 if ok else EXIT_NOT_SAVED


def _write(output: Path, text: str, what: str) -> int:
    from dcctl.report.report_files import save_text

    if not save_text(output, text, "-o"):
        return EXIT_NOT_SAVED
    print(f"wrote the {what} to {output}", file=sys.stderr)
    return 0
