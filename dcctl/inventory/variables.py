"""Parse and validate the variables a host or group sets, one parser per key, and merge
one level of them over another.

A `null` value unsets what a parent group set: `jump: ~` on a host means no jump host, and
`expect: {driver: ~}` drops the driver expectation for that host.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from yaml.nodes import Node, ScalarNode, SequenceNode

from dcctl.inventory.document import Context, describe, is_null, mapping_items
from dcctl.inventory.expect_keys import EXPECT_KEYS
from dcctl.inventory.limits import MAX_VAR_ENTRIES
from dcctl.inventory.messages import shorten

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
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_ValueParser = Callable[[Node, str, Context], Any]
# Told how many `env` and `expect` entries a merge copied; raises past the inventory's budget.
Spend = Callable[[int], None]


def hint(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def merge_vars(base: dict[str, Any], overlay: dict[str, Any], spend: Spend) -> dict[str, Any]:
    """`overlay` wins; `env` and `expect` are merged key by key instead of replaced.

    Nothing is copied that need not be: over nothing, `overlay` itself is the result, and
    with nothing to add, `base`; an `env` or `expect` that only one of them sets (or that the
    other sets empty) is shared, not copied. So the result may be another level's dict, and
    so may each host's env and expect: nothing that reads them changes them. Only where both
    set entries is a new mapping made, and `spend` told its size.
    """
    if not overlay:
        return base
    if not base:
        return overlay
    merged = dict(base)  # a dozen variables at most: only the known ones are kept
    for name, value in overlay.items():
        below = merged.get(name) if name in MERGED_VARS and value is not None else None
        if below and value:
            spend(len(below) + len(value))
            merged[name] = {**below, **value}
        elif not below:
            merged[name] = value
    return merged


def parse_vars(node: Node, where: str, ctx: Context) -> dict[str, Any]:
    """Validated vars under their dcctl names; `None` means "unset what a parent set"."""
    parsed: dict[str, Any] = {}
    spelled_as: dict[str, str] = {}
    for key, key_node, value_node in mapping_items(node, where, ctx):
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
            None if is_null(value_node) else _VAR_PARSERS[canonical](value_node, key, ctx)
        )
    return parsed


def _unknown_var_problem(key: str) -> str:
    if key in EXPECT_KEYS:
        return f"unknown variable; did you mean 'expect.{key}'?"
    known = hint(key, _VAR_PARSERS) or f"; known: {', '.join(_VAR_PARSERS)}"
    return f"unknown variable{known}"


def _parse_text(node: Node, key: str, ctx: Context) -> str:
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str) or not value:
        raise ctx.error(node, key, f"expected a non-empty string, got {describe(node)}")
    if "{{" in value:
        raise ctx.error(node, key, "Jinja templates are not supported; write the value out")
    return value


def _parse_port(node: Node, key: str, ctx: Context) -> int:
    port = _as_int(ctx.construct(node, key))
    if port is None or not 1 <= port <= 65535:
        raise ctx.error(node, key, f"expected a port number 1..65535, got {describe(node)}")
    return port


def _parse_connection(node: Node, key: str, ctx: Context) -> str:
    value = _parse_text(node, key, ctx)
    if value not in ("ssh", "local"):
        raise ctx.error(node, key, f"expected 'ssh' or 'local', got {describe(node)}")
    return value


def _parse_key_file(node: Node, key: str, ctx: Context) -> str:
    # Relative to the inventory file, so the inventory works from any working directory.
    expanded = os.path.expanduser(_parse_text(node, key, ctx))
    return os.path.normpath(os.path.join(ctx.base_dir, expanded))


def _parse_absolute_path(node: Node, key: str, ctx: Context) -> str:
    value = _parse_text(node, key, ctx)
    # The path lives on the node, which is Linux, whatever this machine runs.
    if not posixpath.isabs(value):
        raise ctx.error(node, key, f"expected an absolute path, got {describe(node)}")
    return value


def _parse_env(node: Node, key: str, ctx: Context) -> dict[str, str | None]:
    env: dict[str, str | None] = {}
    for name, name_node, value_node in _bounded_items(node, key, ctx):
        where = f"{key}.{name}"
        if not _ENV_NAME.match(name):
            raise ctx.error(name_node, where, "not a valid environment variable name")
        env[name] = None if is_null(value_node) else _scalar_as_written(value_node, where, ctx)
    return env


def _scalar_as_written(node: Node, key: str, ctx: Context) -> str:
    """The scalar's text as written: `12.10` stays "12.10" and `on` stays "on", where
    YAML would have made them 12.1 and True."""
    if not isinstance(node, ScalarNode):
        raise ctx.error(node, key, f"expected a string or number, got {describe(node)}")
    if not node.tag.startswith(_STANDARD_TAG_PREFIX):
        raise ctx.error(node, key, f"YAML tag '{shorten(node.tag)}' is not supported here")
    return str(node.value)


def _bounded_items(node: Node, key: str, ctx: Context) -> list[tuple[str, Node, Node]]:
    """The entries of an `env` or `expect` mapping, refused past MAX_VAR_ENTRIES at the
    first entry over it."""
    items = mapping_items(node, key, ctx)
    if len(items) > MAX_VAR_ENTRIES:
        _, name_node, _ = items[MAX_VAR_ENTRIES]
        raise ctx.error(name_node, key, f"more than {MAX_VAR_ENTRIES:,} entries (dcctl's limit)")
    return items


def _bounded_list(node: SequenceNode, key: str, ctx: Context) -> list[Node]:
    if len(node.value) > MAX_VAR_ENTRIES:
        raise ctx.error(node.value[MAX_VAR_ENTRIES], key,
                        f"more than {MAX_VAR_ENTRIES:,} items (dcctl's limit)")  # fmt: skip
    return list(node.value)


def _parse_expect(node: Node, key: str, ctx: Context) -> dict[str, Any]:
    expect: dict[str, Any] = {}
    for name, name_node, value_node in _bounded_items(node, key, ctx):
        where = f"{key}.{name}"
        if name not in EXPECT_KEYS:
            raise ctx.error(name_node, where, f"unknown key{hint(name, EXPECT_KEYS)}")
        parser = _EXPECT_PARSERS.get(name, _parse_any)
        expect[name] = None if is_null(value_node) else parser(value_node, where, ctx)
    return expect


def _parse_any(node: Node, key: str, ctx: Context) -> Any:
    return ctx.construct(node, key)


def _as_int(value: object) -> int | None:
    """`value` if it is a YAML integer; booleans are ints to Python but not to a user."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_count(node: Node, key: str, ctx: Context) -> int:
    count = _as_int(ctx.construct(node, key))
    if count is None or count < 0:
        raise ctx.error(node, key, f"expected a whole number >= 0, got {describe(node)}")
    return count


def _parse_positive_int(node: Node, key: str, ctx: Context) -> int:
    number = _as_int(ctx.construct(node, key))
    if number is None or number <= 0:
        raise ctx.error(node, key, f"expected a whole number > 0, got {describe(node)}")
    return number


def _parse_amount(node: Node, key: str, ctx: Context) -> float | int:
    value = ctx.construct(node, key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise ctx.error(node, key, f"expected a number >= 0, got {describe(node)}")
    return value


def _choice(*choices: str, true: str = "on") -> _ValueParser:
    """A parser for one of `choices`. YAML 1.1 reads a bare on/off (and yes/no) as a boolean:
    False is 'off', True is `true` ('on', or 'required' for the auto/required/off keys)."""
    wanted = " or ".join(repr(c) for c in choices)

    def parse(node: Node, key: str, ctx: Context) -> str:
        value = ctx.construct(node, key)
        if isinstance(value, bool):
            value = true if value else "off"
        if value not in choices:
            raise ctx.error(node, key, f"expected {wanted}, got {describe(node)}")
        return str(value)

    return parse


_parse_on_off = _choice("on", "off")


def _parse_positive_amount(node: Node, key: str, ctx: Context) -> float | int:
    value = _parse_amount(node, key, ctx)
    if value <= 0:
        raise ctx.error(node, key, f"expected a number > 0, got {describe(node)}")
    return value


def _parse_bool(node: Node, key: str, ctx: Context) -> bool:
    value = ctx.construct(node, key)
    if not isinstance(value, bool):
        raise ctx.error(node, key, f"expected true or false, got {describe(node)}")
    return value


def _parse_counts(node: Node, key: str, ctx: Context) -> list[int]:
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, key, f"expected a list of whole numbers, got {describe(node)}")
    return [_parse_count(item, key, ctx) for item in _bounded_list(node, key, ctx)]


def _parse_mounts(node: Node, key: str, ctx: Context) -> list[str]:
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, key, f"expected a list of mount points, got {describe(node)}")
    return [_parse_absolute_path(item, key, ctx) for item in _bounded_list(node, key, ctx)]


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
    "vbios_uniform": _parse_bool,
    "persistence_mode": _choice("on", "off", "any"),
    "mig_mode": _choice("on", "off", "any"),
    "max_gpu_processes": _parse_count,
    "ecc": _choice("on", "off", "any"),
    "max_ecc_correctable": _parse_count,
    "max_pcie_replays": _parse_count,
    "max_gpu_temp_c": _parse_amount,
    "max_power_fraction": _parse_amount,
    "nvlink_links": _parse_count,
    "max_nvlink_replay": _parse_count,
    "max_nvlink_recovery": _parse_count,
    "max_nvlink_crc": _parse_count,
    "fabric_manager": _choice("auto", "required", "off", true="required"),
    "xid_window_h": _parse_positive_amount,
    "ignore_xids": _parse_counts,
    "nvidia_peermem": _choice("auto", "required", "off", true="required"),
    "max_ib_link_downed": _parse_count,
    "nvme_count": _parse_count,
    "min_scratch_free_gb": _parse_amount,
}
