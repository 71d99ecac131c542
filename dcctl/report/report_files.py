"""A run written to a file as a report: the format follows the file's extension (.html the
self-contained page with plots, .xml JUnit, .md Markdown, .json the run document), and the
file appears whole or not at all (temp file and rename), so a CI job never picks up half a
JUnit file.

Used by `dcctl report -o FILE` and by `--report FILE` on bench, certify, run and audit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from dcctl.errors import InputError

# Extension -> format; the formats a file can take (the console table is for a terminal).
EXTENSIONS = {".html": "html", ".htm": "html", ".xml": "junit", ".md": "markdown", ".json": "json"}
FILE_FORMATS = ("html", "junit", "markdown", "json")
_KNOWN = ".html (page with plots), .xml (JUnit), .md (Markdown), .json (run document)"


def format_for(path: Path) -> str:
    """The format a report file's extension asks for; InputError (exit 2) for any other."""
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"{path}: a report file ends in {_KNOWN}")
    return fmt


def render(document: Mapping[str, Any], fmt: str, run_dir: Path | None = None) -> str:
    """The whole report as text; `fmt` one of FILE_FORMATS. The HTML page shows the inventory
    and playbook the run kept in `run_dir`, if given."""
    if fmt == "html":
        from dcctl.report.html import render_html
        from dcctl.results.sources import read_sources

        return render_html(document, read_sources(run_dir) if run_dir is not None else None)
    if fmt == "junit":
        from dcctl.report.junit import render_junit

        return render_junit(document)
    if fmt == "markdown":
        from dcctl.report.markdown import render_markdown

        return render_markdown(document)
    if fmt == "json":
        return json.dumps(document, indent=2) + "\n"
    raise InputError(f"format {fmt!r}: expected one of {', '.join(FILE_FORMATS)}")


def write_report(
    document: Mapping[str, Any], path: Path, fmt: str | None = None, run_dir: Path | None = None
) -> None:
    """Render `document` (as `fmt`, else as the extension says) and write it atomically.
    InputError for an unknown extension; OSError if the file cannot be written (nothing is
    left behind then)."""
    write_text_atomic(path, render(document, fmt or format_for(path), run_dir))


def write_text_atomic(path: Path, text: str) -> None:
    """`text` at `path`, whole or not at all; an existing file there is replaced."""
    from dcctl.results import store

    # A report is made to be shared, as any file the user writes with `>` would be.
    store.write_text_atomic(path, text, 0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_report(
    document: Mapping[str, Any],
    path: Path | None,
    option: str = "--report",
    run_dir: Path | None = None,
) -> bool:
    """Write the report `path` asks for, if any; False (after one error line on stderr) if
    it could not be written: the caller's exit code then says "not saved" (4)."""
    if path is None:
        return True
    try:
        text = render(document, format_for(path), run_dir)
    except InputError as exc:
        _not_saved(str(exc), option)
        return False
    return save_text(path, text, option)


def save_text(path: Path, text: str, option: str) -> bool:
    """`text` written to `path` whole or not at all; False after one error line on stderr
    naming the path and the option to change."""
    try:
        write_text_atomic(path, text)
    except OSError as exc:
        _not_saved(f"cannot write {path}: {exc.strerror or exc}", option)
        return False
    return True


def _not_saved(why: str, option: str) -> None:
    from dcctl.report.console import print_error

    print_error(f"{why}; the report was not saved (choose another {option} path)")


def _check_report_path(value: Path | None) -> Path | None:
    """Refuse an unknown extension while the command line is parsed: before anything runs."""
    if value is not None and value.suffix.lower() not in EXTENSIONS:
        raise typer.BadParameter(f"{value}: expected a file ending in {_KNOWN}")
    return value


def report_option() -> Any:
    """`--report FILE` for the commands that run hosts: the run, also written as a report."""
    return typer.Option(
        None,
        "--report",
        metavar="FILE",
        callback=_check_report_path,
        help="Also write the run as a report: .html page with plots, .xml JUnit, .md Markdown, "
        ".json run document (written whole or not at all; not writable: exit 4).",
        show_default=False,
    )
