"""`dcctl audit`: the health audit cron runs. Locked against overlap, quiet unless something
changed, history kept, a node_exporter textfile, and Slurm drain/resume of the hosts it judged."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dcctl.cli.options import GlobalOptions, global_options, reporting_errors
from dcctl.errors import InputError
from dcctl.report.report_files import report_option

if TYPE_CHECKING:
    from dcctl.playbook.model import Playbook

# Another audit holds the lock: this one ran nothing. Not a failure of the nodes, so cron
# wrappers can tell "try later" from "the fleet is sick".
EXIT_BUSY = 5


def audit(
    ctx: typer.Context,
    playbook: Path | None = typer.Option(
        None,
        "--playbook",
        help="Playbook to run instead of the built-in audit (checks with DCGM level 1, then "
        "a quick GEMM).",
        show_default=False,
    ),
    textfile: Path | None = typer.Option(
        None,
        "--textfile",
        help="Write a node_exporter textfile here (atomically): dcctl_check_status, "
        "dcctl_metric, dcctl_host_up, dcctl_last_run_timestamp_seconds, "
        "dcctl_audit_duration_seconds.",
        show_default=False,
    ),
    drain: bool = typer.Option(
        False,
        "--drain",
        help="Drain failing hosts in Slurm (reason 'dcctl: ...') and resume those that pass "
        "again; a node drained by anyone else is never touched.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="With --drain: say what would be drained or resumed; change nothing.",
    ),
    report_file: Path | None = report_option(),
) -> None:
    """Audit the fleet: run the audit playbook, keep the figures in the history, and print
    only what changed since the previous audit (new failures, regressions, recoveries). Two
    audits with nothing new print nothing, which is what cron wants.

    A second audit started while one runs exits at once with code 5. SIGTERM and SIGHUP end
    an audit as Ctrl-C does: the partial run is kept, remote processes are stopped, and
    neither the textfile nor Slurm is touched. Examples:

      dcctl -i cluster.yaml audit

      dcctl -i cluster.yaml audit --textfile /var/lib/node_exporter/textfile/dcctl.prom

      dcctl -i cluster.yaml audit --drain --dry-run

      dcctl -i cluster.yaml -v audit          # the whole run, not only what changed

    Cron: */30 * * * * dcctl -i /etc/dcctl/cluster.yaml audit --drain --textfile PATH
    """
    from dcctl.audit.lock import AuditLock
    from dcctl.report.console import print_error

    options = global_options(ctx)
    if dry_run and not drain:
        raise typer.BadParameter("applies with --drain only", param_hint="--dry-run")
    with reporting_errors():
        book = _playbook(playbook)
        lock = AuditLock(options.state_dir)
        try:
            busy = lock.acquire()
        except OSError as exc:
            raise InputError(
                f"cannot lock {lock.path}: {exc.strerror or exc} (use --state-dir DIR)"
            ) from None
        if busy is not None:
            print_error(str(busy))
            raise typer.Exit(EXIT_BUSY)
        try:
            code = _audit(options, book, textfile, (drain, dry_run), report_file)
        finally:
            lock.release()
    raise typer.Exit(code)


def _playbook(path: Path | None) -> Playbook:
    from dcctl.playbook.builtin import audit_playbook
    from dcctl.playbook.loader import load_playbook

    return audit_playbook() if path is None else load_playbook(str(path))


def _audit(
    options: GlobalOptions,
    book: Playbook,
    textfile: Path | None,
    slurm: tuple[bool, bool],
    report_file: Path | None,
) -> int:
    """The audit, once it holds the lock; `slurm` is (--drain, --dry-run)."""
    drain, dry_run = slurm
    from dcctl.audit.report import AuditReport
    from dcctl.cli.step import execute, finish
    from dcctl.results.document import stopped_exit_code

    started = time.monotonic()
    execution = execute(options, book, "audit")
    duration_s = time.monotonic() - started
    stop = execution.stop
    report = AuditReport(options, execution.saved, stop, duration_s, datetime.now(timezone.utc))
    # A stop that came after the last step still stops the audit: no textfile, no Slurm.
    if not stop.is_set():
        report.write_textfile(textfile)
    if drain and not stop.is_set():
        report.drain(dry_run)
    code = finish(options, execution, report.show, report=report_file)
    return stopped_exit_code(stop.signum) if stop.is_set() else code
