"""Resolve each host's variables over its groups: host > child group > parent group > `all`.

`env` and `expect` are merged key by key across those levels instead of replaced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dcctl.errors import InputError
from dcctl.inventory.document import Context, line
from dcctl.inventory.groups import ALL_GROUP, GroupDef, InventoryBuilder
from dcctl.inventory.model import DEFAULT_PYTHON, DEFAULT_SCRATCH_DIR, Host, Inventory
from dcctl.inventory.variables import merge_vars


def resolve(builder: InventoryBuilder, ctx: Context) -> Inventory:
    depths = _group_depths(builder.groups, ctx)
    if not builder.host_vars:
        raise InputError(f"{ctx.path}: the inventory defines no hosts")
    ancestry = {group: _ancestors(group, builder.groups) for group in builder.groups}
    hosts = tuple(
        _build_host(name, _precedence_order(builder, name, depths, ancestry), builder)
        for name in builder.host_vars
    )
    members = {
        group: tuple(host.name for host in hosts if group in host.groups)
        for group in builder.groups
    }
    return Inventory(source=ctx.path, hosts=hosts, groups=members)


def _group_depths(groups: Mapping[str, GroupDef], ctx: Context) -> dict[str, int]:
    """Longest path from `all` to each group; a child is always deeper than its parents."""
    depths: dict[str, int] = {ALL_GROUP: 0}

    def depth(name: str, below: tuple[str, ...]) -> int:
        if name not in depths:
            walked = (*below, name)
            parents = groups[name].parents
            for parent in parents:
                if parent in walked:
                    chain = (*walked[walked.index(parent) :], parent)
                    raise _cycle_error(chain, groups, ctx)
            depths[name] = 1 + max(depth(parent, walked) for parent in parents)
        return depths[name]

    for name in groups:
        depth(name, ())
    return depths


def _cycle_error(
    chain: tuple[str, ...], groups: Mapping[str, GroupDef], ctx: Context
) -> InputError:
    """`chain` walks from child to parent back to where it started, e.g. (a, b, a).
    The message points at the declaration written last, the likeliest mistake."""
    links = [
        (groups[chain[step]].parents[chain[step + 1]], chain[step])
        for step in range(len(chain) - 1)
    ]
    declared_at, child = max(links, key=lambda link: line(link[0]))
    cycle = " -> ".join(reversed(chain))
    return ctx.error(
        declared_at, child, f"group cycle: {cycle} (each is a child of the one before)"
    )


def _ancestors(name: str, groups: Mapping[str, GroupDef]) -> set[str]:
    found = {name}
    for parent in groups[name].parents:
        found |= _ancestors(parent, groups)
    return found


def _precedence_order(
    builder: InventoryBuilder,
    host: str,
    depths: Mapping[str, int],
    ancestry: Mapping[str, set[str]],
) -> tuple[str, ...]:
    """Every group of `host`, lowest precedence first: shallow before deep, and at equal
    depth in file order, so the later group wins."""
    groups = {ALL_GROUP}
    for direct in builder.host_groups[host]:
        groups |= ancestry[direct]
    return tuple(sorted(groups, key=lambda group: (depths[group], builder.groups[group].order)))


def _build_host(name: str, groups: tuple[str, ...], builder: InventoryBuilder) -> Host:
    merged: dict[str, Any] = {}
    for group in groups:
        merged = merge_vars(merged, builder.groups[group].vars)
    merged = merge_vars(merged, builder.host_vars[name])
    return Host(
        name=name,
        address=merged.get("host") or name,
        connection=merged.get("connection") or "ssh",
        port=merged.get("port"),
        user=merged.get("user"),
        key_file=merged.get("key_file"),
        python=merged.get("python") or DEFAULT_PYTHON,
        jump=merged.get("jump"),
        env=_drop_unset(merged.get("env")),
        fabric_address=merged.get("fabric_address"),
        scratch_dir=merged.get("scratch_dir") or DEFAULT_SCRATCH_DIR,
        expect=_drop_unset(merged.get("expect")),
        groups=groups,
    )


def _drop_unset(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: value for key, value in (values or {}).items() if value is not None}
