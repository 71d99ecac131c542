"""Load a YAML inventory (the Ansible YAML-inventory subset) into an `Inventory`."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import sys
from collections.abc import Iterator, Mapping

from dcctl.inventory.document import Context, ValueConstructor, compose, read_text
from dcctl.inventory.groups import ALL_GROUP, InventoryBuilder, walk_top_level
from dcctl.inventory.model import DEFAULT_PYTHON, Host, Inventory
from dcctl.inventory.precedence import resolve

BUILTIN_SOURCE = "<built-in: localhost>"
INVENTORY_ENV_VAR = "DCCTL_INVENTORY"


def load_inventory(
    path: str | None, env: Mapping[str, str] = os.environ, *, show_warnings: bool = True
) -> Inventory:
    """The inventory at `path`, else at $DCCTL_INVENTORY, else the built-in localhost one.
    Its warnings (`inventory.warnings`) are printed to stderr, each once, unless told not to."""
    chosen = path or env.get(INVENTORY_ENV_VAR) or None
    if chosen is None:
        return builtin_inventory()
    inventory = _load_file(chosen)
    if show_warnings:
        for warning in inventory.warnings:
            print(f"dcctl: warning: {warning}", file=sys.stderr)
    return inventory


def builtin_inventory() -> Inventory:
    """One host, `localhost`, over the local transport with the running interpreter."""
    localhost = Host(
        name="localhost",
        address="localhost",
        connection="local",
        python=sys.executable or DEFAULT_PYTHON,
        groups=(ALL_GROUP,),
    )
    return Inventory(
        source=BUILTIN_SOURCE, hosts=(localhost,), groups={ALL_GROUP: (localhost.name,)}
    )


def _load_file(path: str) -> Inventory:
    ctx = Context(
        path=path,
        constructor=ValueConstructor(),
    )
    with _collector_paused():
        text = read_text(path)
        root = compose(text, path)
        builder = InventoryBuilder()
        walk_top_level(root, ctx, builder)
        return dataclasses.replace(resolve(builder, ctx), text=text)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Loading makes millions of objects that all live on, and no reference cycles: the
    cyclic collector would walk them again and again for nothing (3 to 4 times the load
    time of a large inventory). Reference counting still frees whatever is dropped."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
