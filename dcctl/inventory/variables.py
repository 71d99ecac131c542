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
import shlex
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.inventory.document import Context, describe, is_null, mapping_items
from dcctl.inventory.expect_keys import EXPECT_KEYS
from dcctl.inventory.expect_kinds import Kind, ListOf, MappingOf, Mismatch, Scalar
from dcctl.inventory.limits import MAX_VAR_ENTRIES
from dcctl.inventory.messages import shorten

# dcctl name -> its Ansible spellings, the one Ansible prefers first (as its PlayContext and
# ssh connection plugin do: `ansible_ssh_host` over `ansible_host`, whatever level sets each).
ANSIBLE_SPELLINGS: dict[str, tuple[str, ...]] = {
    "host": ("ansible_ssh_host", "ansible_host"),
    "port": ("ansible_ssh_port", "ansible_port"),
    "user": ("ansible_ssh_user", "ansible_user"),
    "key_file": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "connection": ("ansible_connection",),
    "python": ("ansible_python_interpreter",),
    # `-o ProxyJump=...` (or `-J`) in the ssh arguments Ansible passes to every connection
    "jump": ("ansible_ssh_common_args",),
}
_SSH_COMMON_ARGS = "ansible_ssh_common_args"
# One ssh_config option as `-o` takes it: `Key=value`, `Key = value` or `Key value`.
_SSH_OPTION = re.compile(r"([A-Za-z]+)\s*(?:=\s*|\s+)(.*)\Z", re.DOTALL)

# Ansible spelling -> dcctl spelling; both are accepted.
VAR_ALIASES: dict[str, str] = {
    alias: name for name, aliases in ANSIBLE_SPELLINGS.items() for alias in aliases
}

# Set on a group, orders it among the groups of its depth (Ansible's default: 1).
GROUP_PRIORITY_VAR = "ansible_group_priority"

# Vars whose values are mappings merged key by key across levels instead of replaced.
MERGED_VARS = ("env", "expect")

_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = "tag:yaml.org,2002:str"
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
    for name in overlay:
        _drop_other_spellings(merged, name)
    for name, value in overlay.items():
        below = merged.get(name) if name in MERGED_VARS and value is not None else None
        if below and value:
            spend(len(below) + len(value))
            merged[name] = {**below, **value}
        elif not below:
            merged[name] = value
    return merged


def _drop_other_spellings(merged: dict[str, Any], name: str) -> None:
    """A dcctl name set at a level overrides every Ansible spelling of it below, and an
    Ansible spelling overrides the dcctl name below; Ansible's spellings stay apart, as they
    are to Ansible, and `effective` picks among them."""
    if name in ANSIBLE_SPELLINGS:
        for alias in ANSIBLE_SPELLINGS[name]:
            merged.pop(alias, None)
    else:
        canonical = VAR_ALIASES.get(name)
        if canonical is not None:
            merged.pop(canonical, None)


def effective(merged: Mapping[str, Any], name: str) -> Any:
    """The value of dcctl variable `name` in resolved vars: its dcctl spelling, else the
    Ansible spelling Ansible prefers."""
    if name in merged:
        return merged[name]
    for alias in ANSIBLE_SPELLINGS.get(name, ()):
        if alias in merged:
            return merged[alias]
    return None


def parse_vars(node: Node, where: str, ctx: Context) -> dict[str, Any]:
    """Validated vars, under the name they were written with (a dcctl name or an Ansible
    spelling of one); `None` means "unset what a parent set". Variables dcctl does not use
    are left out unread: an inventory written for other tools carries dozens."""
    parsed: dict[str, Any] = {}
    items = mapping_items(node, where, ctx)
    shadowed = {VAR_ALIASES[key] for key, _, _ in items if key in VAR_ALIASES}
    shadowed.discard("jump")  # ssh arguments need not mention a jump host at all
    for key, key_node, value_node in items:
        canonical = VAR_ALIASES.get(key, key)
        if canonical not in _VAR_PARSERS:
            if key == GROUP_PRIORITY_VAR:
                parsed[key] = _parse_priority(value_node, key, ctx)
            else:
                _warn_near_miss(key, key_node, ctx)
            continue
        if key == _SSH_COMMON_ARGS:
            # Other ssh options beside `jump` are no conflict: `jump` wins in one place.
            parsed[key] = None if is_null(value_node) else _parse_ssh_args(value_node, key, ctx)
            continue
        if key in shadowed:
            # `user: billybob` beside `ansible_user: ubuntu` is another tool's `user`: Ansible
            # connects as ubuntu, and so does dcctl. It is not even read.
            continue
        value = None if is_null(value_node) else _VAR_PARSERS[canonical](value_node, key, ctx)
        if value is None and canonical == "env" and not is_null(value_node):
            continue  # `env: prod` is another tool's variable: dcctl's env is a mapping
        parsed[key] = value
    return parsed


def _parse_ssh_args(node: Node, key: str, ctx: Context) -> Any:
    """The jump host in ssh arguments (`-o ProxyJump=admin@bastion`, `-J admin@bastion`), or
    None for none. ProxyCommand cannot be followed: refused if a host would use it."""
    is_text = isinstance(node, ScalarNode) and node.tag == _STR_TAG
    if is_text and any(mark in node.value for mark in _TEMPLATE_MARKS):
        return Template(str(ctx.error(node, key, _JINJA_PROBLEM)))
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str):
        return None  # not ssh arguments Ansible could pass either
    try:
        words = shlex.split(value)
    except ValueError as exc:
        return Template(str(ctx.error(node, key, f"cannot be read as ssh arguments: {exc}")))
    for option, setting in _ssh_options(words):
        if setting.lower() == "none":
            return None
        if option == "proxyjump":
            return setting
        if option == "proxycommand":
            problem = (
                f"ProxyCommand '{shorten(setting)}' is not supported; "
                "use -o ProxyJump=user@bastion, or dcctl's 'jump'"
            )
            return Template(str(ctx.error(node, key, problem)))
    return None


def _ssh_options(words: list[str]) -> Iterator[tuple[str, str]]:
    """(option in lower case, its value) for ProxyJump and ProxyCommand, in order: `-J x`,
    `-Jx`, `-o Key=x`, `-oKey=x`, `-o "Key x"`. ssh takes the first value given."""
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word in ("-J", "-o") and index < len(words):
            flag, text = word, words[index]
            index += 1
        elif word.startswith(("-J", "-o")) and len(word) > 2:
            flag, text = word[:2], word[2:]
        else:
            continue
        if flag == "-J":
            yield "proxyjump", text
            continue
        found = _SSH_OPTION.match(text.strip())
        if found and found.group(1).lower() in ("proxyjump", "proxycommand"):
            yield found.group(1).lower(), found.group(2).strip()


# Ansible discovers the interpreter for these: dcctl's default (python3) stands for them.
_DISCOVERED_PYTHON = ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")


def _parse_python(node: Node, key: str, ctx: Context) -> str | None:
    value = _parse_text(node, key, ctx)
    return None if value in _DISCOVERED_PYTHON else value


def _parse_priority(node: Node, key: str, ctx: Context) -> int:
    """Ansible reads it with int(): 10 and '10' alike."""
    value = None if is_null(node) else ctx.construct(node, key)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        value = int(value)
    number = _as_int(value)
    if number is None:
        raise ctx.error(node, key, f"expected a whole number, got {describe(node)}")
    return number


def _warn_near_miss(key: str, key_node: Node, ctx: Context) -> None:
    """A variable dcctl does not use is ignored; one that looks like a slip of the keyboard
    on one of dcctl's names gets a warning. The test is narrow on purpose: another tool's
    variable (`http_port`, `hostname`, `users`) must never be taken for a typo of dcctl's."""
    if key in EXPECT_KEYS and "_" in key:
        ctx.warn(key_node, key, f"ignored; did you mean 'expect.{key}'?")
        return
    candidates = VAR_ALIASES if key.startswith("ansible_") else _VAR_PARSERS
    for candidate in candidates:
        if is_near_miss(key, candidate):
            ctx.warn(key_node, key, f"unknown variable, ignored; did you mean '{candidate}'?")
            return


def is_near_miss(word: str, name: str) -> bool:
    """`word` is `name` with two neighbouring letters swapped, or (for names of more than
    four letters) one letter changed, dropped or added inside it, never at either end:
    `pyhton`, `pythn`, `fabric_adress` are near-misses; `ports`, `http_port`, `post` are not."""
    if word == name:
        return False
    if len(word) == len(name):
        diffs = [i for i in range(len(word)) if word[i] != name[i]]
        if len(diffs) == 2 and diffs[1] == diffs[0] + 1:
            i = diffs[0]
            return word[i] == name[i + 1] and word[i + 1] == name[i]
        return len(name) > 4 and len(diffs) == 1 and 0 < diffs[0] < len(name) - 1
    if len(name) <= 4 or abs(len(word) - len(name)) != 1:
        return False
    longer, shorter = (word, name) if len(word) > len(name) else (name, word)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(1, len(longer) - 1))


_TEMPLATE_MARKS = ("{{", "{%", "{#")
_JINJA_PROBLEM = "Jinja templates are not supported; write the value out"


@dataclass(frozen=True)
class Template:
    """A value dcctl cannot use (a Jinja template where it wants a plain value, a connection
    plugin it does not have, a ProxyCommand). Never refused for the file: a group's templated
    `ansible_host` that every host overrides, or that an `ansible_ssh_host` outranks, is never
    read, as in Ansible; a host that does use one is kept but marked unusable (`Uses`)."""

    error: str  # `file:line: key: problem`, the message if it is used


class Uses:
    """The values one host uses, taken one by one: a Template among them is not an error for
    the file, only for the host (the first one is kept as the reason it cannot be reached)."""

    def __init__(self) -> None:
        self.problem: str | None = None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, Template):
            if self.problem is None:
                self.problem = value.error
            return None
        return value


def _template_or(parser: _ValueParser) -> _ValueParser:
    def parse(node: Node, key: str, ctx: Context) -> Any:
        is_text = isinstance(node, ScalarNode) and node.tag == _STR_TAG
        if is_text and any(mark in node.value for mark in _TEMPLATE_MARKS):
            return Template(str(ctx.error(node, key, _JINJA_PROBLEM)))
        return parser(node, key, ctx)

    return parse


def _parse_text(node: Node, key: str, ctx: Context) -> str:
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str) or not value:
        raise ctx.error(node, key, f"expected a non-empty string, got {describe(node)}")
    if any(mark in value for mark in _TEMPLATE_MARKS):
        raise ctx.error(node, key, _JINJA_PROBLEM)
    return value


def _parse_port(node: Node, key: str, ctx: Context) -> int:
    value = ctx.construct(node, key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # Ansible converts a quoted port: ansible_port: "2222"
    port = _as_int(value)
    if port is None or not 1 <= port <= 65535:
        raise ctx.error(node, key, f"expected a port number 1..65535, got {describe(node)}")
    return port


# Ansible connection plugins that are OpenSSH or the local machine, as dcctl connects.
_CONNECTIONS = {
    "ssh": "ssh",
    "smart": "ssh",
    "paramiko": "ssh",
    "paramiko_ssh": "ssh",
    "ansible.builtin.ssh": "ssh",
    "ansible.builtin.paramiko_ssh": "ssh",
    "local": "local",
    "ansible.builtin.local": "local",
}


def _parse_connection(node: Node, key: str, ctx: Context) -> Any:
    """'ssh' or 'local'. Another Ansible plugin (docker, network_cli, aws_ssm...) is kept,
    and refused only if a host uses it: a group of such hosts may sit beside the GPU nodes."""
    value = _parse_text(node, key, ctx)
    if value not in _CONNECTIONS:
        problem = f"expected 'ssh' or 'local', got {describe(node)}"
        return Template(str(ctx.error(node, key, problem)))
    return _CONNECTIONS[value]


def _parse_key_file(node: Node, key: str, ctx: Context) -> str:
    # Relative to the directory dcctl runs in, as Ansible's: it hands the path to ssh as
    # written, so `keys/id` in a repository's inventory/ means <where you run>/keys/id.
    return os.path.abspath(os.path.expanduser(_parse_text(node, key, ctx)))


def _parse_absolute_path(node: Node, key: str, ctx: Context) -> str:
    value = _parse_text(node, key, ctx)
    # The path lives on the node, which is Linux, whatever this machine runs.
    if not posixpath.isabs(value):
        raise ctx.error(node, key, f"expected an absolute path, got {describe(node)}")
    return value


def _parse_node_dir(node: Node, key: str, ctx: Context) -> str:
    """A directory on the node as dcctl makes and removes it: absolute, no `.` or `..` parts
    (`/a/x/../v` is /a/v only once x exists), never / (nor //, which POSIX keeps apart);
    duplicate and trailing slashes are dropped."""
    value = _parse_absolute_path(node, key, ctx)
    named = [part for part in value.split("/") if part]
    if "." in named or ".." in named:
        problem = f"expected a path without . or .. parts, got {describe(node)}"
        raise ctx.error(node, key, problem)
    if not named:
        raise ctx.error(node, key, f"expected a directory of its own, got {describe(node)}")
    return "/" + "/".join(named)


# pip's index URLs: a mirror over HTTP(S), or a directory served as one (file://).
_INDEX_SCHEMES = ("http://", "https://", "file://")


def _parse_index_url(node: Node, key: str, ctx: Context) -> str:
    value = _parse_text(node, key, ctx)
    if not value.lower().startswith(_INDEX_SCHEMES):
        raise ctx.error(node, key, f"expected an http(s):// or file:// URL, got {describe(node)}")
    return value


def _parse_requirement(node: Node, key: str, ctx: Context) -> str:
    """A pip requirement (`torch==2.4.1`), read by packaging, the parser pip itself vendors;
    pip reads a leading '-' as an option instead."""
    from packaging.requirements import InvalidRequirement, Requirement

    value = _parse_text(node, key, ctx).strip()
    if not value or value.startswith("-"):
        problem = f"expected a pip requirement such as 'torch==2.4.1', got {describe(node)}"
        raise ctx.error(node, key, f"{problem}; pip options go in pip_extra_args")
    try:
        Requirement(value)
    except InvalidRequirement as exc:
        # packaging >= 22 adds the text and a caret under it on lines of their own.
        why = (str(exc).splitlines() or ["invalid"])[0]
        raise ctx.error(node, key, f"not a pip requirement: {why}") from None
    return value


def _parse_pip_args(node: Node, key: str, ctx: Context) -> Any:
    """Arguments pip gets as they are, each one argv item: a list, or a string split as a
    shell splits it (`--trusted-host mirror.local --timeout 60`); never run through a shell."""
    if isinstance(node, SequenceNode):
        items = _bounded_list(node, key, ctx)
        for item in items:
            if isinstance(item, ScalarNode) and any(m in item.value for m in _TEMPLATE_MARKS):
                return Template(str(ctx.error(item, key, _JINJA_PROBLEM)))
        words = [_scalar_as_written(item, key, ctx) for item in items]
        for item, word in zip(items, words, strict=True):
            if not word:
                raise ctx.error(item, key, "expected non-empty strings, got an empty one")
        return tuple(words)
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str):
        problem = f"expected a list of strings or one string of arguments, got {describe(node)}"
        raise ctx.error(node, key, problem)
    if any(mark in value for mark in _TEMPLATE_MARKS):
        return Template(str(ctx.error(node, key, _JINJA_PROBLEM)))
    try:
        return tuple(shlex.split(value))
    except ValueError as exc:
        raise ctx.error(node, key, f"cannot be split into arguments: {exc}") from None


def _parse_env(node: Node, key: str, ctx: Context) -> dict[str, str | None] | None:
    if isinstance(node, ScalarNode) and not is_null(node):
        return None  # `env: prod`, another tool's variable: dcctl's env is a mapping
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


def parse_expect(node: Node, key: str, ctx: Context) -> dict[str, Any]:
    """Each entry checked against its kind in the expect table: the plain validated value."""
    expect: dict[str, Any] = {}
    for name, name_node, value_node in _bounded_items(node, key, ctx):
        where = f"{key}.{name}"
        entry = EXPECT_KEYS.get(name)
        if entry is None:
            raise ctx.error(name_node, where, f"unknown key{hint(name, EXPECT_KEYS)}")
        expect[name] = (
            None if is_null(value_node) else _parse_kind(entry.kind, value_node, where, ctx)
        )
    return expect


def _parse_kind(kind: Kind, node: Node, key: str, ctx: Context) -> Any:
    if isinstance(kind, ListOf):
        if not isinstance(node, SequenceNode):
            raise ctx.error(node, key, f"expected {kind.expected}, got {describe(node)}")
        return [_parse_scalar(kind.item, item, key, ctx) for item in _bounded_list(node, key, ctx)]
    if isinstance(kind, MappingOf):
        if not isinstance(node, MappingNode):
            raise ctx.error(node, key, f"expected {kind.expected}, got {describe(node)}")
        parsed = {}
        for name, name_node, value_node in _bounded_items(node, key, ctx):
            where = f"{key}.{name}"
            number = _checked(kind.key, name, name_node, where, ctx)
            parsed[number] = _parse_scalar(kind.value, value_node, where, ctx)
        return parsed
    return _parse_scalar(kind, node, key, ctx)


def _parse_scalar(kind: Scalar, node: Node, key: str, ctx: Context) -> Any:
    written = _scalar_as_written(node, key, ctx) if kind.as_written else ctx.construct(node, key)
    return _checked(kind, written, node, key, ctx)


def _checked(kind: Scalar, value: Any, node: Node, key: str, ctx: Context) -> Any:
    try:
        return kind.check(value)
    except Mismatch as exc:
        raise ctx.error(node, key, exc.problem(describe(node))) from None


def _as_int(value: object) -> int | None:
    """`value` if it is a YAML integer; booleans are ints to Python but not to a user."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_VAR_PARSERS: Mapping[str, _ValueParser] = {
    "host": _template_or(_parse_text),
    "port": _template_or(_parse_port),
    "user": _template_or(_parse_text),
    "key_file": _template_or(_parse_key_file),
    "connection": _template_or(_parse_connection),
    "python": _template_or(_parse_python),
    "jump": _template_or(_parse_text),
    "env": _parse_env,
    "fabric_address": _template_or(_parse_text),
    "scratch_dir": _template_or(_parse_node_dir),
    "expect": parse_expect,
    # Read by `dcctl provision` only.
    "runtime_venv": _template_or(_parse_node_dir),
    "torch_spec": _template_or(_parse_requirement),
    "pip_index_url": _template_or(_parse_index_url),
    "pip_extra_args": _parse_pip_args,
    "wheelhouse": _template_or(_parse_node_dir),
    "provision_python": _template_or(_parse_text),
}
