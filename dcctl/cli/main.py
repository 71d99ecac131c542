"""The `dcctl` command: global options, then one module per command."""

from __future__ import annotations

from pathlib import Path

import typer

from dcctl import __version__
from dcctl.cli import audit, bench, certify, check, history, inventory, provision, report
from dcctl.cli import run as run_command
from dcctl.cli.bounds import MAX_CONNECT_TIMEOUT_S, MAX_FORKS, MAX_WORKERS, seconds_between
from dcctl.cli.options import GlobalOptions
from dcctl.results.state_dir import default_state_dir

app = typer.Typer(
    name="dcctl",
    help="Check, benchmark and certify GPU clusters over SSH. Agentless: nodes need only SSH "
    "and Python 3.",
    epilog="Examples:\n\n"
    "  dcctl check                          # this machine, no inventory needed\n\n"
    "  dcctl -i rack1.yaml check            # every host of an inventory\n\n"
    "  dcctl -i rack1.yaml -l 'gpu0*,!gpu007' --json check > run.json\n\n"
    "Exit codes: 0 passed, 1 a check failed, 2 usage or input error (nothing ran), "
    "3 a host could not be evaluated, 4 results shown but not saved (state dir, history, "
    "report file or output not writable), 5 another audit is running (audit), 130/143/129 "
    "stopped by SIGINT/SIGTERM/SIGHUP (the partial run is kept).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(inventory.app, name="inventory")
app.command(name="check")(check.check)
app.command(name="bench")(bench.bench)
app.command(name="certify")(certify.certify)
app.command(name="run")(run_command.run)
app.command(name="audit")(audit.audit)
app.command(name="history")(history.history)
app.command(name="report")(report.report)
app.command(name="provision")(provision.provision)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dcctl {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    inventory_path: str | None = typer.Option(
        None,
        "-i",
        "--inventory",
        help="Inventory YAML. Default: $DCCTL_INVENTORY, else localhost only.",
        show_default=False,
    ),
    limit: str | None = typer.Option(
        None,
        "-l",
        "--limit",
        help="Host patterns, as Ansible's: names, groups, globs, a,b or a:b, !exclude, "
        "&intersect, group[0] or group[1:3] (subscripts), ~regex.",
    ),
    forks: int = typer.Option(
        64,
        "--forks",
        min=1,
        max=MAX_FORKS,
        help="Hosts running their task at once. Hosts still connecting wait apart, up to as "
        "many again.",
    ),
    workers: int = typer.Option(
        0,
        "--workers",
        min=0,
        max=MAX_WORKERS,
        help="Processes that share the SSH connections. 0: one per 128 SSH hosts, up to the "
        "CPU count; 1: all in this process.",
    ),
    json_output: bool = typer.Option(
        False, "--json", help="Print the run document as JSON on stdout; nothing else there."
    ),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Where runs and trusted host keys are kept. Default: $XDG_STATE_HOME/dcctl.",
        show_default=False,
    ),
    no_history: bool = typer.Option(
        False,
        "--no-history",
        help="Do not add this run to the history db (runs are still saved as files).",
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="More detail."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress; only problems."),
    strict: bool = typer.Option(False, "--strict", help="Treat warnings as failures (exit 1)."),
    accept_new_host_keys: bool = typer.Option(
        False,
        "--accept-new-host-keys",
        help="Trust and record host keys seen for the first time. Changed keys are always refused.",
    ),
    connect_timeout: float = typer.Option(
        10.0,
        "--connect-timeout",
        callback=seconds_between(0.1, MAX_CONNECT_TIMEOUT_S),
        help=f"Seconds for TCP connect, SSH banner and auth: 0.1 to {MAX_CONNECT_TIMEOUT_S:g}.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    ctx.obj = GlobalOptions(
        inventory=inventory_path,
        limit=limit,
        forks=forks,
        workers=workers,
        json=json_output,
        state_dir=state_dir or default_state_dir(),
        verbose=verbose,
        quiet=quiet,
        strict=strict,
        accept_new_host_keys=accept_new_host_keys,
        connect_timeout_s=connect_timeout,
        history=not no_history,
    )


def run() -> None:
    from dcctl.fleet.signals import leave_on_stop_signals

    leave_on_stop_signals()
    app()
