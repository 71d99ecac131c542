"""Options every command shares, parsed once by the top-level callback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

from dcctl.errors import DcctlError


@dataclass(frozen=True)
class GlobalOptions:
    inventory: str | None
    limit: str | None
    forks: int
    workers: int
    json: bool
    state_dir: Path
    verbose: bool
    quiet: bool
    strict: bool
    accept_new_host_keys: bool
    connect_timeout_s: float
    # Keep each run's figures in the state dir's history db (off: --no-history).
    history: bool = True

    @property
    def show_progress(self) -> bool:
        return not (self.quiet or self.json)


def global_options(ctx: typer.Context) -> GlobalOptions:
    options = ctx.find_root().obj
    assert isinstance(options, GlobalOptions)
    return options


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """A user error becomes one line on stderr and its documented exit code, never a traceback."""
    try:
        yield
    except DcctlError as exc:
        from dcctl.report.console import print_error

        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
