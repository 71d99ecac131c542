"""Walk the group tree of a composed inventory: which groups exist, their vars, their
parents, and which hosts each lists directly."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from dcctl.inventory.addresses import split_host_key
from dcctl.inventory.document import Context, describe, mapping_items
from dcctl.inventory.limits import MAX_GROUPS, MAX_HOSTS, MAX_MEMBERSHIPS, MAX_MERGED_ENTRIES
from dcctl.inventory.ranges import HostRangeError, expand_host_range
from dcctl.inventory.variables import GROUP_PRIORITY_VAR, hint, merge_vars, parse_vars

ALL_GROUP = "all"
# Ansible's implicit group: every host that no group but `all` lists.
UNGROUPED_GROUP = "ungrouped"
DEFAULT_GROUP_PRIORITY = 1
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_NULL_TAG = "tag:yaml.org,2002:null"
GROUP_KEYS = ("hosts", "vars", "children")

# Characters that would make a name unselectable with --limit, or look like a range or glob.
_NAME_FORBIDDEN = re.compile(r"[\s,*?\[\]]|^[!&]")


@dataclass
class GroupDef:
    """A group as declared, merged over every place the file mentions it."""

    order: int
    vars: dict[str, Any] = field(default_factory=dict)
    # `ansible_group_priority`: among groups of one depth, the higher is merged later (wins)
    priority: int = DEFAULT_GROUP_PRIORITY
    # hosts it lists itself and its child groups, each in the order first listed
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    # parent name -> the key node declaring this group under it, for cycle messages
    parents: dict[str, Node] = field(default_factory=dict)


# id(a host's vars before a listing) -> (those vars, the listing's merged over them)
_Merges = dict[int, tuple[dict[str, Any], dict[str, Any]]]


@dataclass
class InventoryBuilder:
    """What the walk over the document collects, before precedence is applied."""

    groups: dict[str, GroupDef] = field(default_factory=dict)
    # host -> merged host-level vars; insertion order is first-seen file order. Hosts of one
    # range share one dict: it is never changed, only replaced.
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    # host -> groups that list it directly
    host_groups: dict[str, list[str]] = field(default_factory=dict)
    # host -> the key that first lists it, for messages about the host as a whole
    host_keys: dict[str, Node] = field(default_factory=dict)
    # hosts listed so far, once per group that lists them (ranges and aliases expanded)
    listed: int = 0
    # `env` and `expect` entries copied by merges so far (MAX_MERGED_ENTRIES)
    merged_entries: int = 0

    def group(self, name: str) -> GroupDef:
        if name not in self.groups:
            self.groups[name] = GroupDef(order=len(self.groups))
        return self.groups[name]

    def add_host(self, name: str, group: str, listing: _Listing, merges: _Merges) -> None:
        """`merges` is shared by the names of one host key: those listed before under the
        same vars (the same range, listed again) get one merge between them, not one each."""
        earlier = self.host_vars.get(name)
        if earlier is None:
            self.host_vars[name] = listing.vars
            self.host_keys[name] = listing.key
        else:
            if id(earlier) not in merges:
                merged = self.merge(earlier, listing.vars, listing.key, listing.pattern,
                                    listing.ctx)  # fmt: skip
                merges[id(earlier)] = (earlier, merged)
            self.host_vars[name] = merges[id(earlier)][1]
        memberships = self.host_groups.setdefault(name, [])
        if group not in memberships:
            memberships.append(group)
            self.groups[group].hosts.append(name)

    def add_child(self, parent: str, child: str, at: Node) -> None:
        if parent not in self.groups[child].parents:
            self.groups[child].parents[parent] = at
            self.groups[parent].children.append(child)

    def merge(
        self, base: dict[str, Any], overlay: dict[str, Any], at: Node, where: str, ctx: Context
    ) -> dict[str, Any]:
        """`merge_vars`, counting what it copies against MAX_MERGED_ENTRIES; `at` and
        `where` name the place a refusal points at."""

        def spend(entries: int) -> None:
            self.merged_entries += entries
            if self.merged_entries > MAX_MERGED_ENTRIES:
                problem = (
                    f"env and expect merged across groups and hosts copy more than "
                    f"{MAX_MERGED_ENTRIES:,} entries in all (dcctl's limit); "
                    "set what hosts share once, on a group"
                )
                raise ctx.error(at, where, problem)

        return merge_vars(base, overlay, spend)


@dataclass(frozen=True)
class _Listing:
    """One host key of a `hosts:` mapping: its vars, parsed once for every name it stands for."""

    key: Node
    pattern: str
    vars: dict[str, Any]
    ctx: Context


def _check_name(node: Node, name: str, kind: str, ctx: Context) -> None:
    if _NAME_FORBIDDEN.search(name):
        problem = f"invalid {kind} name: no spaces, ',', '*', '?', '[', ']' or leading '!' or '&'"
        raise ctx.error(node, name, problem)


def _declare_group(node: Node, name: str, ctx: Context, builder: InventoryBuilder) -> GroupDef:
    _check_name(node, name, "group", ctx)
    # `ungrouped`, always there, is not counted: the file declares the groups counted.
    if name not in builder.groups and len(builder.groups) - 1 >= MAX_GROUPS:
        raise ctx.error(node, name, f"more than {MAX_GROUPS:,} groups (dcctl's limit)")
    return builder.group(name)


def walk_top_level(root: Node, ctx: Context, builder: InventoryBuilder) -> None:
    if not isinstance(root, MappingNode):
        raise ctx.error(
            root, "top level", f"expected a mapping of groups such as 'all:', got {describe(root)}"
        )
    builder.group(ALL_GROUP)
    builder.group(UNGROUPED_GROUP)
    builder.add_child(ALL_GROUP, UNGROUPED_GROUP, root)
    for name, key_node, value_node in mapping_items(root, "top level", ctx):
        _declare_group(key_node, name, ctx, builder)
        if name != ALL_GROUP:
            # Top-level groups other than `all` are its children, as in Ansible.
            builder.add_child(ALL_GROUP, name, key_node)
        _walk_group(name, value_node, ctx, builder)
    _place_ungrouped(builder)


def _place_ungrouped(builder: InventoryBuilder) -> None:
    """As Ansible: a host in no group but `all` is in `ungrouped`, and a host in another
    group is not, even when `ungrouped` lists it."""
    ungrouped: list[str] = []
    for host, memberships in builder.host_groups.items():
        grouped = any(group not in (ALL_GROUP, UNGROUPED_GROUP) for group in memberships)
        if grouped and UNGROUPED_GROUP in memberships:
            memberships.remove(UNGROUPED_GROUP)
        elif not grouped:
            if UNGROUPED_GROUP not in memberships:
                memberships.append(UNGROUPED_GROUP)
            ungrouped.append(host)
    group = builder.groups[UNGROUPED_GROUP]
    keep, listed = set(ungrouped), set(group.hosts)
    group.hosts = [host for host in group.hosts if host in keep]
    group.hosts += [host for host in ungrouped if host not in listed]


def _section(node: Node) -> Node:
    """`hosts`, `children` or `vars` as a mapping: Ansible reads a string there as a mapping
    of that one name to nothing (`hosts: gpu01` lists gpu01)."""
    if isinstance(node, ScalarNode) and node.tag == _STR_TAG and node.value:
        empty = ScalarNode(_NULL_TAG, "", node.start_mark, node.end_mark)
        return MappingNode(_MAP_TAG, [(node, empty)], node.start_mark, node.end_mark)
    return node


def _walk_group(name: str, node: Node, ctx: Context, builder: InventoryBuilder) -> None:
    group = builder.group(name)
    for key, key_node, value_node in mapping_items(node, name, ctx):
        value_node = _section(value_node)
        if key == "hosts":
            _walk_hosts(name, value_node, ctx, builder)
        elif key == "vars":
            where = f"{name}.vars"
            parsed = parse_vars(value_node, where, ctx)
            if GROUP_PRIORITY_VAR in parsed:
                group.priority = parsed.pop(GROUP_PRIORITY_VAR)
            group.vars = builder.merge(group.vars, parsed, value_node, where, ctx)
        elif key == "children":
            _walk_children(name, value_node, ctx, builder)
        else:
            known = hint(key, GROUP_KEYS) or f"; a group holds {', '.join(GROUP_KEYS)}"
            raise ctx.error(key_node, f"{name}.{key}", f"unknown key{known}")


def _walk_children(parent: str, node: Node, ctx: Context, builder: InventoryBuilder) -> None:
    for child, key_node, value_node in mapping_items(node, f"{parent}.children", ctx):
        if child == ALL_GROUP:
            raise ctx.error(key_node, child, "'all' holds every group; it cannot be a child")
        _declare_group(key_node, child, ctx, builder)
        builder.add_child(parent, child, key_node)
        _walk_group(child, value_node, ctx, builder)


def _walk_hosts(group: str, node: Node, ctx: Context, builder: InventoryBuilder) -> None:
    for key, key_node, value_node in mapping_items(node, f"{group}.hosts", ctx):
        # `gpu01:2222` is host gpu01 with ansible_port 2222, which its own vars may override.
        pattern, port = split_host_key(key)
        host_vars = parse_vars(value_node, key, ctx)
        host_vars.pop(GROUP_PRIORITY_VAR, None)  # a group's setting; on a host it means nothing
        if port is not None:
            if port > 65535:
                raise ctx.error(key_node, key, f"port {port} is not a port number 1..65535")
            host_vars = merge_vars({"ansible_port": port}, host_vars, _copies_nothing)
        listing = _Listing(key_node, pattern, host_vars, ctx)
        names = _expand_host_key(key_node, pattern, ctx)
        _count_listed(key_node, pattern, len(names), ctx, builder)
        merges: _Merges = {}
        for name in names:
            _check_name(key_node, name, "host", ctx)
            if name not in builder.host_vars and len(builder.host_vars) >= MAX_HOSTS:
                raise ctx.error(key_node, pattern, f"more than {MAX_HOSTS:,} hosts (dcctl's limit)")
            builder.add_host(name, group, listing, merges)


def _copies_nothing(entries: int) -> None:
    """A port over a host's own vars: there is no `env` or `expect` below it to copy."""


def _expand_host_key(node: Node, pattern: str, ctx: Context) -> list[str]:
    try:
        return expand_host_range(pattern)
    except HostRangeError as exc:
        raise ctx.error(node, pattern, f"bad host range: {exc.reason}") from None


def _count_listed(
    node: Node, pattern: str, count: int, ctx: Context, builder: InventoryBuilder
) -> None:
    """A range listed under many groups (or under one group many aliases reach) costs its
    size each time, whatever the number of distinct hosts."""
    builder.listed += count
    if builder.listed > MAX_MEMBERSHIPS:
        problem = f"hosts listed under groups more than {MAX_MEMBERSHIPS:,} times (dcctl's limit)"
        raise ctx.error(node, pattern, problem)
