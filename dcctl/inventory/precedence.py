"""Resolve each host's variables over its groups: host > child group > parent group > `all`.

`env` and `expect` are merged key by key across those levels instead of replaced.

Every pass here is a loop over the group graph in dependency order, never a recursion, so a
chain of groups thousands deep costs no stack; and hosts listed under the same groups share
one resolution of those groups, so 100,000 hosts in a few racks resolve a few racks' worth.
Hosts that also share their own vars (one range) share the host-level merge as well, and
with it the very `env` and `expect` dicts: nothing downstream changes a resolved host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dcctl.errors import InputError
from dcctl.inventory.document import Context, line
from dcctl.inventory.groups import ALL_GROUP, GroupDef, InventoryBuilder
from dcctl.inventory.limits import MAX_GROUP_LINKS, MAX_MEMBERSHIPS
from dcctl.inventory.model import (
    DEFAULT_PYTHON,
    DEFAULT_RUNTIME_VENV,
    DEFAULT_SCRATCH_DIR,
    Connection,
    Host,
    Inventory,
)
from dcctl.inventory.variables import Template, Uses, effective

# Groups of a cycle a message names before it cuts the middle out.
_SHOWN_CYCLE = 9
_SHOWN_CYCLE_END = 4


@dataclass(frozen=True)
class _GroupTree:
    """Each group's depth (longest path from `all`) and its ancestors, itself included."""

    depths: dict[str, int]
    ancestry: dict[str, frozenset[str]]


@dataclass(frozen=True)
class _Settings:
    """Variables merged over every level, and the `env` and `expect` a host gets from them
    (keys a `null` unset dropped). Hosts whose levels hold the same dicts share one."""

    vars: dict[str, Any]
    env: dict[str, str]
    expect: dict[str, Any]


@dataclass(frozen=True)
class _Resolved:
    """What hosts listed under the same groups share: their groups, lowest precedence
    first; those groups' vars merged in that order; and the settings of hosts with their
    own vars, by the identity of those vars (which the hosts of one range share)."""

    groups: tuple[str, ...]
    settings: _Settings
    with_own: dict[int, tuple[dict[str, Any], _Settings]]


def resolve(builder: InventoryBuilder, ctx: Context) -> Inventory:
    tree = _group_tree(builder.groups, ctx)
    if not builder.host_vars:
        raise InputError(f"{ctx.path}: the inventory defines no hosts")
    shared: dict[tuple[str, ...], _Resolved] = {}
    hosts = tuple(_build_host(name, _resolved(builder, tree, name, shared, ctx), builder, ctx)
                  for name in builder.host_vars)  # fmt: skip
    _check_memberships(hosts, ctx)
    members: dict[str, list[str]] = {group: [] for group in builder.groups}
    for host in hosts:
        for group in host.groups:
            members[group].append(host.name)
    groups = {group: tuple(names) for group, names in members.items()}
    return Inventory(
        source=ctx.path,
        hosts=hosts,
        groups=groups,
        warnings=tuple(ctx.warnings),
        group_hosts={name: tuple(group.hosts) for name, group in builder.groups.items()},
        group_children={name: tuple(group.children) for name, group in builder.groups.items()},
    )


def _group_tree(groups: Mapping[str, GroupDef], ctx: Context) -> _GroupTree:
    """Depths and ancestries, parents before children (Kahn's order); a group left over
    when no more can be placed is on a cycle."""
    depths: dict[str, int] = {}
    ancestry: dict[str, frozenset[str]] = {}
    children: dict[str, list[str]] = {name: [] for name in groups}
    waiting = {name: len(group.parents) for name, group in groups.items()}
    for name, group in groups.items():
        for parent in group.parents:
            children[parent].append(name)
    ready = [name for name, count in waiting.items() if count == 0]
    links = 0
    while ready:
        name = ready.pop()
        parents = groups[name].parents
        depths[name] = 1 + max((depths[parent] for parent in parents), default=-1)
        ancestry[name] = frozenset({name}).union(*(ancestry[parent] for parent in parents))
        links += len(ancestry[name])
        if links > MAX_GROUP_LINKS:
            raise _too_many_links(groups[name], name, ctx)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(depths) < len(groups):
        raise _cycle_error(_find_cycle(groups, depths), groups, ctx)
    return _GroupTree(depths, ancestry)


def _too_many_links(group: GroupDef, name: str, ctx: Context) -> InputError:
    declared_at = next(iter(group.parents.values()))
    problem = f"groups have more than {MAX_GROUP_LINKS:,} ancestors in all (dcctl's limit)"
    return ctx.error(declared_at, name, problem)


def _find_cycle(groups: Mapping[str, GroupDef], placed: Mapping[str, int]) -> tuple[str, ...]:
    """From the first group left unplaced, follow unplaced parents until one repeats: every
    unplaced group has one. The cycle is returned from child to parent, back to its start."""
    current = next(name for name in groups if name not in placed)
    walked: dict[str, int] = {}  # group -> its position on the walk
    while current not in walked:
        walked[current] = len(walked)
        current = next(p for p in groups[current].parents if p not in placed)
    cycle = list(walked)[walked[current] :]
    return (*cycle, current)


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
    cycle = " -> ".join(_shown_cycle(tuple(reversed(chain))))
    return ctx.error(
        declared_at, child, f"group cycle: {cycle} (each is a child of the one before)"
    )


def _shown_cycle(groups: tuple[str, ...]) -> tuple[str, ...]:
    """A long cycle, as a message shows it: its ends, and how many groups lie between."""
    if len(groups) <= _SHOWN_CYCLE:
        return groups
    between = f"... ({len(groups) - 2 * _SHOWN_CYCLE_END:,} more groups)"
    return (*groups[:_SHOWN_CYCLE_END], between, *groups[-_SHOWN_CYCLE_END:])


def _resolved(
    builder: InventoryBuilder,
    tree: _GroupTree,
    host: str,
    shared: dict[tuple[str, ...], _Resolved],
    ctx: Context,
) -> _Resolved:
    direct = tuple(builder.host_groups[host])
    if direct not in shared:
        order = _precedence_order(builder, direct, tree)
        merged: dict[str, Any] = {}
        for group in order:
            merged = builder.merge(merged, builder.groups[group].vars, builder.host_keys[host],
                                   host, ctx)  # fmt: skip
        shared[direct] = _Resolved(order, _settings(merged), {})
    return shared[direct]


def _precedence_order(
    builder: InventoryBuilder, direct: tuple[str, ...], tree: _GroupTree
) -> tuple[str, ...]:
    """Every group of a host listed under `direct`, lowest precedence first, as Ansible
    sorts them: shallow before deep; at equal depth by `ansible_group_priority`, then by
    name, so the group whose name sorts last wins (not the one written last)."""
    groups = {ALL_GROUP}.union(*(tree.ancestry[group] for group in direct))
    definitions = builder.groups
    return tuple(
        sorted(groups, key=lambda group: (tree.depths[group], definitions[group].priority, group))
    )


def _check_memberships(hosts: tuple[Host, ...], ctx: Context) -> None:
    """Each host in each of its groups is an entry of the inventory's group table."""
    if sum(len(host.groups) for host in hosts) > MAX_MEMBERSHIPS:
        problem = f"hosts belong to groups more than {MAX_MEMBERSHIPS:,} times"
        raise InputError(f"{ctx.path}: {problem}, counting parent groups (dcctl's limit)")


def _build_host(name: str, resolved: _Resolved, builder: InventoryBuilder, ctx: Context) -> Host:
    settings = _host_settings(name, resolved, builder, ctx)
    merged = settings.vars
    used = Uses()
    connection: Connection = used(effective(merged, "connection")) or "ssh"
    jump = effective(merged, "jump")
    # A local host makes no ssh connection: its ssh arguments are never read.
    jump = used(jump) if connection == "ssh" else None if isinstance(jump, Template) else jump
    return Host(
        name=name,
        address=used(effective(merged, "host")) or name,
        connection=connection,
        port=used(effective(merged, "port")),
        user=used(effective(merged, "user")),
        key_file=used(effective(merged, "key_file")),
        python=used(effective(merged, "python")) or DEFAULT_PYTHON,
        jump=jump,
        env=settings.env,
        fabric_address=used(merged.get("fabric_address")),
        scratch_dir=used(merged.get("scratch_dir")) or DEFAULT_SCRATCH_DIR,
        expect=settings.expect,
        groups=resolved.groups,
        unusable=used.problem,
        python_set=effective(merged, "python") is not None,
        **_provision_settings(merged),
    )


def _provision_settings(merged: dict[str, Any]) -> dict[str, Any]:
    """The variables only `dcctl provision` reads; a template among them spoils that command
    for the host, not check or bench (another tool's role may own a `wheelhouse`)."""
    used = Uses()
    return {
        "runtime_venv": used(merged.get("runtime_venv")) or DEFAULT_RUNTIME_VENV,
        "torch_spec": used(merged.get("torch_spec")),
        "pip_index_url": used(merged.get("pip_index_url")),
        "pip_extra_args": used(merged.get("pip_extra_args")) or (),
        "wheelhouse": used(merged.get("wheelhouse")),
        "provision_python": used(merged.get("provision_python")),
        "provision_unusable": used.problem,
    }


def _host_settings(
    name: str, resolved: _Resolved, builder: InventoryBuilder, ctx: Context
) -> _Settings:
    """The host's own vars over its groups'. An `env` or `expect` of its own is merged once
    for every host that shares both (one range); other vars are a dozen keys at most."""
    own = builder.host_vars[name]
    if not own:
        return resolved.settings
    at = builder.host_keys[name]
    if "env" not in own and "expect" not in own:
        merged = builder.merge(resolved.settings.vars, own, at, name, ctx)  # copies no entries
        return _Settings(merged, resolved.settings.env, resolved.settings.expect)
    if id(own) not in resolved.with_own:
        merged = builder.merge(resolved.settings.vars, own, at, name, ctx)
        resolved.with_own[id(own)] = (own, _settings(merged))
    return resolved.with_own[id(own)][1]


def _settings(merged: dict[str, Any]) -> _Settings:
    return _Settings(merged, _drop_unset(merged.get("env")), _drop_unset(merged.get("expect")))


def _drop_unset(values: dict[str, Any] | None) -> dict[str, Any]:
    """`values` without the keys a `null` unset; `values` itself when none was."""
    if values is None:
        return {}
    if None not in values.values():
        return values
    return {key: value for key, value in values.items() if value is not None}
