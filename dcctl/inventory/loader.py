"""Load a YAML inventory (the Ansible YAML-inventory subset) into an `Inventory`.

The document is composed into PyYAML nodes rather than loaded into plain objects so every
error can name the file and line it comes from; values are constructed one node at a time,
only for the keys dcctl reads (an `ansible_*` value dcctl ignores may hold a `!vault` tag).

A `null` value unsets what a parent group set: `jump: ~` on a host means no jump host, and
`expect: {driver: ~}` drops the driver expectation for that host.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.errors import InputError
from dcctl.inventory.expect_keys import EXPECT_KEYS
from dcctl.inventory.model import DEFAULT_PYTHON, DEFAULT_SCRATCH_DIR, Host, Inventory
from dcctl.inventory.ranges import HostRangeError, expand_host_range

BUILTIN_SOURCE = "<built-in: localhost>"
INVENTORY_ENV_VAR = "DCCTL_INVENTORY"

ALL_GROUP = "all"
GROUP_KEYS = ("hosts", "vars", "children")

# Ansible spelling -> dcctl spelling; both are accepted.
VAR_ALIASES: dict[str, str] = {
    "ansible_host": "host",
    "ansible_port": "port",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key_file",
    "ansible_connection": "connection",
    "ansible_python_interpreter": "python",
}

# Vars whose values are mappings merged key by key across levels instead of replaced.
MERGED_VARS = ("env", "expect")

_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Characters that would make a name unselectable with --limit, or look like a range or glob.
_NAME_FORBIDDEN = re.compile(r"[\s,*?\[\]]|^[!&]")


def load_inventory(path: str | None, env: Mapping[str, str] = os.environ) -> Inventory:
    """The inventory at `path`, else at $DCCTL_INVENTORY, else the built-in localhost one."""
    chosen = path or env.get(INVENTORY_ENV_VAR) or None
    if chosen is None:
        return builtin_inventory()
    return _load_file(chosen)


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


# --- reading and composing ------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """Where the document came from, for messages, and the constructor for scalar values."""

    path: str
    base_dir: str
    constructor: SafeConstructor

    def error(self, node: Node, key: str, problem: str) -> InputError:
        return InputError(f"{self.path}:{_line(node)}: {key}: {problem}")

    def construct(self, node: Node, key: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, key, _yaml_problem(exc)) from None


def _load_file(path: str) -> Inventory:
    ctx = _Context(
        path=path,
        base_dir=os.path.dirname(os.path.abspath(path)),
        constructor=SafeConstructor(),
    )
    root = _compose(_read_text(path), path)
    builder = _InventoryBuilder()
    _walk_top_level(root, ctx, builder)
    return _resolve(builder, ctx)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        raise InputError(f"{path}: inventory file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an inventory file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read inventory: {exc.strerror}") from None


def _compose(text: str, path: str) -> Node:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: invalid YAML: {_yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if root is None:
        raise InputError(f"{path}: inventory is empty; expected a mapping with 'all:'")
    return root


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        text = exc.problem or exc.context or "malformed document"
        if exc.context and text.startswith("but "):
            # PyYAML splits some sentences: "expected a single document" / "but found ..."
            text = f"{exc.context} {text}"
    else:
        text = str(exc)
    return " ".join(text.split())


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


# --- node helpers ---------------------------------------------------------------------


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def _describe(node: Node) -> str:
    """How a value reads in a message: `'eight'`, `70000`, `a list`."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _STR_TAG:
        return f"'{node.value}'"
    return str(node.value)


def _mapping_items(node: Node, key: str, ctx: _Context) -> list[tuple[str, Node, Node]]:
    """(key, key node, value node) in document order; `null` counts as an empty mapping.

    PyYAML keeps the last of two equal keys silently; here that is an error, because a
    second `hosts:` under one group would otherwise drop every host of the first.
    `<<: *anchor` merge keys are honoured, explicit keys overriding merged ones.
    """
    if _is_null(node):
        return []
    if not isinstance(node, MappingNode):
        raise ctx.error(node, key, f"expected a mapping, got {_describe(node)}")
    _reject_duplicate_keys(node, ctx)
    flattened = MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
    try:
        ctx.constructor.flatten_mapping(flattened)
    except yaml.YAMLError as exc:
        raise ctx.error(node, key, _yaml_problem(exc)) from None
    items: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in flattened.value:
        items[_key_text(key_node, ctx)] = (key_node, value_node)
    return [(name, key_node, value_node) for name, (key_node, value_node) in items.items()]


def _reject_duplicate_keys(node: MappingNode, ctx: _Context) -> None:
    first_seen: dict[str, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        name = _key_text(key_node, ctx)
        if name in first_seen:
            first_line = _line(first_seen[name])
            raise ctx.error(key_node, name, f"duplicate key (first at line {first_line})")
        first_seen[name] = key_node


def _key_text(node: Node, ctx: _Context) -> str:
    if not isinstance(node, ScalarNode) or _is_null(node) or node.value == "":
        raise ctx.error(node, "key", f"keys must be plain names, got {_describe(node)}")
    return str(node.value)


def _hint(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _check_name(node: Node, name: str, kind: str, ctx: _Context) -> None:
    if _NAME_FORBIDDEN.search(name):
        problem = f"invalid {kind} name: no spaces, ',', '*', '?', '[', ']' or leading '!' or '&'"
        raise ctx.error(node, name, problem)


# --- group structure ------------------------------------------------------------------


@dataclass
class _GroupDef:
    """A group as declared, merged over every place the file mentions it."""

    order: int
    vars: dict[str, Any] = field(default_factory=dict)
    # parent name -> the key node declaring this group under it, for cycle messages
    parents: dict[str, Node] = field(default_factory=dict)


@dataclass
class _InventoryBuilder:
    """What the walk over the document collects, before precedence is applied."""

    groups: dict[str, _GroupDef] = field(default_factory=dict)
    # host -> merged host-level vars; insertion order is first-seen file order
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    # host -> groups that list it directly
    host_groups: dict[str, list[str]] = field(default_factory=dict)

    def group(self, name: str) -> _GroupDef:
        if name not in self.groups:
            self.groups[name] = _GroupDef(order=len(self.groups))
        return self.groups[name]

    def add_host(self, name: str, group: str, host_vars: dict[str, Any]) -> None:
        self.host_vars[name] = _merge_vars(self.host_vars.get(name, {}), host_vars)
        memberships = self.host_groups.setdefault(name, [])
        if group not in memberships:
            memberships.append(group)


def _walk_top_level(root: Node, ctx: _Context, builder: _InventoryBuilder) -> None:
    if not isinstance(root, MappingNode):
        raise ctx.error(
            root, "top level", f"expected a mapping of groups such as 'all:', got {_describe(root)}"
        )
    builder.group(ALL_GROUP)
    for name, key_node, value_node in _mapping_items(root, "top level", ctx):
        _check_name(key_node, name, "group", ctx)
        if name != ALL_GROUP:
            # Top-level groups other than `all` are its children, as in Ansible.
            builder.group(name).parents.setdefault(ALL_GROUP, key_node)
        _walk_group(name, value_node, ctx, builder)


def _walk_group(name: str, node: Node, ctx: _Context, builder: _InventoryBuilder) -> None:
    group = builder.group(name)
    for key, key_node, value_node in _mapping_items(node, name, ctx):
        if key == "hosts":
            _walk_hosts(name, value_node, ctx, builder)
        elif key == "vars":
            group.vars = _merge_vars(group.vars, _parse_vars(value_node, f"{name}.vars", ctx))
        elif key == "children":
            _walk_children(name, value_node, ctx, builder)
        else:
            hint = _hint(key, GROUP_KEYS) or f"; a group holds {', '.join(GROUP_KEYS)}"
            raise ctx.error(key_node, f"{name}.{key}", f"unknown key{hint}")


def _walk_children(parent: str, node: Node, ctx: _Context, builder: _InventoryBuilder) -> None:
    for child, key_node, value_node in _mapping_items(node, f"{parent}.children", ctx):
        _check_name(key_node, child, "group", ctx)
        if child == ALL_GROUP:
            raise ctx.error(key_node, child, "'all' holds every group; it cannot be a child")
        builder.group(child).parents.setdefault(parent, key_node)
        _walk_group(child, value_node, ctx, builder)


def _walk_hosts(group: str, node: Node, ctx: _Context, builder: _InventoryBuilder) -> None:
    for pattern, key_node, value_node in _mapping_items(node, f"{group}.hosts", ctx):
        host_vars = _parse_vars(value_node, pattern, ctx)
        for name in _expand_host_key(key_node, pattern, ctx):
            _check_name(key_node, name, "host", ctx)
            builder.add_host(name, group, host_vars)


def _expand_host_key(node: Node, pattern: str, ctx: _Context) -> list[str]:
    try:
        return expand_host_range(pattern)
    except HostRangeError as exc:
        raise ctx.error(node, pattern, f"bad host range: {exc.reason}") from None


# --- variables ------------------------------------------------------------------------

_ValueParser = Callable[[Node, str, _Context], Any]


def _parse_vars(node: Node, where: str, ctx: _Context) -> dict[str, Any]:
    """Validated vars under their dcctl names; `None` means "unset what a parent set"."""
    parsed: dict[str, Any] = {}
    spelled_as: dict[str, str] = {}
    for key, key_node, value_node in _mapping_items(node, where, ctx):
        canonical = VAR_ALIASES.get(key, key)
        if canonical not in _VAR_PARSERS:
            if key.startswith("ansible_"):
                continue  # other Ansible settings mean nothing to dcctl
            raise ctx.error(key_node, key, _unknown_var_problem(key))
        if canonical in spelled_as:
            problem = f"set twice in one place, as '{spelled_as[canonical]}' and '{key}'"
            raise ctx.error(key_node, key, problem)
        spelled_as[canonical] = key
        parsed[canonical] = (
            None if _is_null(value_node) else _VAR_PARSERS[canonical](value_node, key, ctx)
        )
    return parsed


def _unknown_var_problem(key: str) -> str:
    if key in EXPECT_KEYS:
        return f"unknown variable; did you mean 'expect.{key}'?"
    hint = _hint(key, _VAR_PARSERS) or f"; known: {', '.join(_VAR_PARSERS)}"
    return f"unknown variable{hint}"


def _parse_text(node: Node, key: str, ctx: _Context) -> str:
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str) or not value:
        raise ctx.error(node, key, f"expected a non-empty string, got {_describe(node)}")
    if "{{" in value:
        raise ctx.error(node, key, "Jinja templates are not supported; write the value out")
    return value


def _parse_port(node: Node, key: str, ctx: _Context) -> int:
    port = _as_int(ctx.construct(node, key))
    if port is None or not 1 <= port <= 65535:
        raise ctx.error(node, key, f"expected a port number 1..65535, got {_describe(node)}")
    return port


def _parse_connection(node: Node, key: str, ctx: _Context) -> str:
    value = _parse_text(node, key, ctx)
    if value not in ("ssh", "local"):
        raise ctx.error(node, key, f"expected 'ssh' or 'local', got '{value}'")
    return value


def _parse_key_file(node: Node, key: str, ctx: _Context) -> str:
    # Relative to the inventory file, so the inventory works from any working directory.
    expanded = os.path.expanduser(_parse_text(node, key, ctx))
    return os.path.normpath(os.path.join(ctx.base_dir, expanded))


def _parse_absolute_path(node: Node, key: str, ctx: _Context) -> str:
    value = _parse_text(node, key, ctx)
    # The path lives on the node, which is Linux, whatever this machine runs.
    if not posixpath.isabs(value):
        raise ctx.error(node, key, f"expected an absolute path, got '{value}'")
    return value


def _parse_env(node: Node, key: str, ctx: _Context) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for name, name_node, value_node in _mapping_items(node, key, ctx):
        where = f"{key}.{name}"
        if not _ENV_NAME.match(name):
            raise ctx.error(name_node, where, "not a valid environment variable name")
        env[name] = None if _is_null(value_node) else _scalar_as_written(value_node, where, ctx)
    return env


def _scalar_as_written(node: Node, key: str, ctx: _Context) -> str:
    """The scalar's text as written: `12.10` stays "12.10" and `on` stays "on", where
    YAML would have made them 12.1 and True."""
    if not isinstance(node, ScalarNode):
        raise ctx.error(node, key, f"expected a string or number, got {_describe(node)}")
    if not node.tag.startswith(_STANDARD_TAG_PREFIX):
        raise ctx.error(node, key, f"YAML tag '{node.tag}' is not supported here")
    return str(node.value)


def _parse_expect(node: Node, key: str, ctx: _Context) -> dict[str, Any]:
    expect: dict[str, Any] = {}
    for name, name_node, value_node in _mapping_items(node, key, ctx):
        where = f"{key}.{name}"
        if name not in EXPECT_KEYS:
            raise ctx.error(name_node, where, f"unknown key{_hint(name, EXPECT_KEYS)}")
        parser = _EXPECT_PARSERS.get(name, _parse_any)
        expect[name] = None if _is_null(value_node) else parser(value_node, where, ctx)
    return expect


def _parse_any(node: Node, key: str, ctx: _Context) -> Any:
    return ctx.construct(node, key)


def _as_int(value: object) -> int | None:
    """`value` if it is a YAML integer; booleans are ints to Python but not to a user."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_count(node: Node, key: str, ctx: _Context) -> int:
    count = _as_int(ctx.construct(node, key))
    if count is None or count < 0:
        raise ctx.error(node, key, f"expected a whole number >= 0, got {_describe(node)}")
    return count


def _parse_positive_int(node: Node, key: str, ctx: _Context) -> int:
    number = _as_int(ctx.construct(node, key))
    if number is None or number <= 0:
        raise ctx.error(node, key, f"expected a whole number > 0, got {_describe(node)}")
    return number


def _parse_amount(node: Node, key: str, ctx: _Context) -> float | int:
    value = ctx.construct(node, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ctx.error(node, key, f"expected a number >= 0, got {_describe(node)}")
    return value


def _parse_on_off(node: Node, key: str, ctx: _Context) -> str:
    value = ctx.construct(node, key)
    # YAML 1.1 reads a bare on/off (and yes/no) as a boolean.
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in ("on", "off"):
        raise ctx.error(node, key, f"expected 'on' or 'off', got {_describe(node)}")
    return str(value)


def _parse_mounts(node: Node, key: str, ctx: _Context) -> list[str]:
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, key, f"expected a list of mount points, got {_describe(node)}")
    return [_parse_absolute_path(item, key, ctx) for item in node.value]


_VAR_PARSERS: Mapping[str, _ValueParser] = {
    "host": _parse_text,
    "port": _parse_port,
    "user": _parse_text,
    "key_file": _parse_key_file,
    "connection": _parse_connection,
    "python": _parse_text,
    "jump": _parse_text,
    "env": _parse_env,
    "fabric_address": _parse_text,
    "scratch_dir": _parse_absolute_path,
    "expect": _parse_expect,
}

# Keys of EXPECT_KEYS missing here are accepted as any YAML value.
_EXPECT_PARSERS: Mapping[str, _ValueParser] = {
    "os": _scalar_as_written,
    "kernel": _scalar_as_written,
    "driver": _scalar_as_written,
    "cuda": _scalar_as_written,
    "gpu_model": _scalar_as_written,
    "gpu_count": _parse_count,
    "min_memory_gb": _parse_amount,
    "swap": _parse_on_off,
    "mounts": _parse_mounts,
    "ib_ports": _parse_count,
    "ib_rate": _parse_positive_int,
}


# --- precedence -----------------------------------------------------------------------


def _merge_vars(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` wins; `env` and `expect` are merged key by key instead of replaced."""
    merged = dict(base)
    for name, value in overlay.items():
        if name in MERGED_VARS and value is not None:
            merged[name] = {**(merged.get(name) or {}), **value}
        else:
            merged[name] = value
    return merged


def _resolve(builder: _InventoryBuilder, ctx: _Context) -> Inventory:
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


def _group_depths(groups: Mapping[str, _GroupDef], ctx: _Context) -> dict[str, int]:
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
    chain: tuple[str, ...], groups: Mapping[str, _GroupDef], ctx: _Context
) -> InputError:
    """`chain` walks from child to parent back to where it started, e.g. (a, b, a).
    The message points at the declaration written last, the likeliest mistake."""
    links = [
        (groups[chain[step]].parents[chain[step + 1]], chain[step])
        for step in range(len(chain) - 1)
    ]
    declared_at, child = max(links, key=lambda link: _line(link[0]))
    cycle = " -> ".join(reversed(chain))
    return ctx.error(
        declared_at, child, f"group cycle: {cycle} (each is a child of the one before)"
    )


def _ancestors(name: str, groups: Mapping[str, _GroupDef]) -> set[str]:
    found = {name}
    for parent in groups[name].parents:
        found |= _ancestors(parent, groups)
    return found


def _precedence_order(
    builder: _InventoryBuilder,
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


def _build_host(name: str, groups: tuple[str, ...], builder: _InventoryBuilder) -> Host:
    merged: dict[str, Any] = {}
    for group in groups:
        merged = _merge_vars(merged, builder.groups[group].vars)
    merged = _merge_vars(merged, builder.host_vars[name])
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
