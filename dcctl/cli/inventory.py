"""`dcctl inventory show|hosts|validate`: what the inventory resolves to."""

from __future__ import annotations

import dataclasses
from typing import Any

import typer

from dcctl.cli.options import global_options, reporting_errors
from dcctl.errors import InputError
from dcctl.inventory.model import Host, Inventory

# Hosts `validate` names one by one before it only counts the rest.
_SHOWN_UNUSABLE = 20

app = typer.Typer(
    help="Show what an inventory resolves to: hosts, their variables, and errors.",
    no_args_is_help=True,
)


def _selected(ctx: typer.Context) -> tuple[Inventory, list[Host]]:
    from dcctl.inventory import load_inventory, select_hosts

    options = global_options(ctx)
    with reporting_errors():
        inventory = load_inventory(options.inventory)
        return inventory, select_hosts(inventory, options.limit)


@app.command()
def show(ctx: typer.Context) -> None:
    """Every selected host with its resolved variables (host > child group > parent > all).

    Example: dcctl -i rack1.yaml -l 'rack1,!gpu003' inventory show
    """
    inventory, hosts = _selected(ctx)
    from dcctl.report.console import print_json, print_table

    if global_options(ctx).json:
        print_json({"inventory": inventory.source, "hosts": [_host_json(h) for h in hosts]})
        return
    rows = [
        [
            host.name,
            host.address if host.unusable is None else "-",
            host.connection if host.unusable is None else "unusable",
            host.user or "-",
            str(host.port or "-"),
            host.python,
            host.jump or "-",
            ",".join(g for g in host.groups if g != "all") or "-",
            ", ".join(f"{k}={v}" for k, v in host.expect.items()) or "-",
        ]
        for host in hosts
    ]
    columns = ["Host", "Address", "Via", "User", "Port", "Python", "Jump", "Groups", "Expect"]
    print_table(f"{inventory.source}: {len(hosts)} host(s)", columns, rows)
    for host in hosts:
        if host.unusable is not None:
            typer.echo(f"{host.name}: cannot be reached: {host.unusable}", err=True)


@app.command()
def hosts(ctx: typer.Context) -> None:
    """The selected host names, one per line (for scripts).

    Example: dcctl -i rack1.yaml -l 'rack1:&gpu:!gpu007' inventory hosts
    """
    _, selected = _selected(ctx)
    if global_options(ctx).json:
        from dcctl.report.console import print_json

        print_json([host.name for host in selected])
        return
    for host in selected:
        typer.echo(host.name)


@app.command()
def validate(ctx: typer.Context) -> None:
    """Load and check the inventory; exit 2 with file:line: key on the first error, or on
    each selected host dcctl cannot reach (a Jinja template in a value it needs, an Ansible
    connection plugin other than ssh or local): leave those out with -l '!NAME'.

    Example: dcctl -i rack1.yaml -l 'all:!containers' inventory validate
    """
    inventory, selected = _selected(ctx)
    groups = [name for name in inventory.groups if name != "all"]
    unusable = [host for host in selected if host.unusable is not None]
    if global_options(ctx).json:
        from dcctl.report.console import print_json

        print_json({"inventory": inventory.source, "valid": not unusable,
                    "hosts": len(selected), "groups": len(groups),
                    "unusable": {host.name: host.unusable for host in unusable}})  # fmt: skip
    elif not unusable:
        typer.echo(f"{inventory.source}: valid, {len(selected)} host(s) in {len(groups)} group(s)")
    if unusable:
        _report_unusable(unusable)
        raise typer.Exit(InputError.exit_code)


def _report_unusable(unusable: list[Host]) -> None:
    from dcctl.report.console import print_error

    for host in unusable[:_SHOWN_UNUSABLE]:
        print_error(f"{host.unusable} (host {host.name} cannot be reached)")
    if len(unusable) > _SHOWN_UNUSABLE:
        more = len(unusable) - _SHOWN_UNUSABLE
        print_error(f"... and {more:,} more host(s) that cannot be reached")


def _host_json(host: Host) -> dict[str, Any]:
    document = dataclasses.asdict(host)
    document["groups"] = list(host.groups)
    return document
