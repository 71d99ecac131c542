"""Read an inventory file into PyYAML nodes, and the node helpers every later step uses.

The document is composed into nodes rather than loaded into plain objects so every error
can name the file and line it comes from; values are constructed one node at a time, only
for the keys dcctl reads (an `ansible_*` value dcctl ignores may hold a `!vault` tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.errors import InputError
from dcctl.inventory.composer import FAST_LOADER, Composer
from dcctl.inventory.limits import MAX_INVENTORY_BYTES, MAX_KEY_CHARS

_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
# Longer values are cut in messages: an error is one readable line.
_SHOWN_CHARS = 60
# Up to here a syntax error is re-read with PyYAML for its clearer message: ~1 s at most.
REPARSE_MAX_CHARS = 256 * 1024


@dataclass(frozen=True)
class Context:
    """Where the document came from, for messages, and the constructor for scalar values."""

    path: str
    base_dir: str
    constructor: SafeConstructor

    def error(self, node: Node, key: str, problem: str) -> InputError:
        return InputError(f"{self.path}:{line(node)}: {key}: {problem}")

    def construct(self, node: Node, key: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, key, _yaml_problem(exc)) from None
        except ValueError:
            # Python's own limits on what the YAML type implies: an integer of more than
            # 4300 digits, a timestamp such as 2024-13-45.
            kind = node.tag.rsplit(":", 1)[-1]
            raise self.error(node, key, f"cannot be read as a YAML {kind}") from None


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            # One byte past the limit tells a file that is too large without reading it all.
            data = handle.read(MAX_INVENTORY_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: inventory file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not an inventory file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read inventory: {exc.strerror}") from None
    if len(data) > MAX_INVENTORY_BYTES:
        limit = f"{MAX_INVENTORY_BYTES // 2**20} MiB"
        raise InputError(f"{path}: larger than {limit}, dcctl's limit for an inventory file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def compose(text: str, path: str) -> Node:
    """The document's root node; every error names the file, and the line where there is one."""
    composer = Composer(path)
    try:
        for event in yaml.parse(text, Loader=FAST_LOADER or yaml.SafeLoader):
            composer.feed(event)
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, text, path) from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    if composer.root is None:
        raise InputError(f"{path}: inventory is empty; expected a mapping with 'all:'")
    return composer.root


def _syntax_error(exc: yaml.MarkedYAMLError, text: str, path: str) -> InputError:
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return InputError(f"{path}: invalid YAML: {_yaml_problem(exc)}")
    problem = _pure_python_problem(text, path, mark.line) or _yaml_problem(exc)
    return InputError(f"{path}:{mark.line + 1}: invalid YAML: {problem}")


def _pure_python_problem(text: str, path: str, line_index: int) -> str | None:
    """PyYAML's own wording for an error libyaml found: it names the character at fault
    (`found character '\\t'`) where libyaml does not. Re-reading costs ~25 times libyaml's
    time, so only the lines up to the error, and only when they are short.

    The re-read goes through a Composer of its own, so dcctl's limits stop it as they stop the
    first read: newer libyaml refuses deep nesting itself ("exceeded maximum nesting depth"),
    and PyYAML's pure-Python scanner is quadratic in the nesting depth (minutes at 100,000)."""
    end = _end_of_line(text, line_index)
    if FAST_LOADER is None or end is None:
        return None
    composer = Composer(path)
    try:
        for event in yaml.parse(text[:end], Loader=yaml.SafeLoader):
            composer.feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if mark is not None and mark.line == line_index:
            return _yaml_problem(exc)
    except yaml.YAMLError:
        pass  # PyYAML's reader refuses a character libyaml took: keep libyaml's message
    return None


def _end_of_line(text: str, line_index: int) -> int | None:
    """Where line `line_index` (from 0) ends, or None past REPARSE_MAX_CHARS."""
    end = -1
    for _ in range(line_index + 1):
        end = text.find("\n", end + 1, REPARSE_MAX_CHARS)
        if end < 0:
            return len(text) if len(text) <= REPARSE_MAX_CHARS else None
    return end + 1


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        text = exc.problem or exc.context or "malformed document"
        if exc.context and text.startswith("but "):
            # PyYAML splits some sentences: "expected a single document" / "but found ..."
            text = f"{exc.context} {text}"
    else:
        text = str(exc)
    return " ".join(text.split())


def line(node: Node) -> int:
    return int(node.start_mark.line) + 1 if node.start_mark is not None else 1


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def describe(node: Node) -> str:
    """How a value reads in a message: `'eight'`, `70000`, `a list`."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    text = str(node.value)
    if len(text) > _SHOWN_CHARS:
        text = f"{text[:_SHOWN_CHARS]}... ({len(text):,} characters)"
    return f"'{text}'" if node.tag == _STR_TAG else text


def mapping_items(node: Node, key: str, ctx: Context) -> list[tuple[str, Node, Node]]:
    """(key, key node, value node) in document order; `null` counts as an empty mapping.

    PyYAML keeps the last of two equal keys silently; here that is an error, because a
    second `hosts:` under one group would otherwise drop every host of the first.
    `<<: *anchor` merge keys are honoured, explicit keys overriding merged ones.
    """
    if is_null(node):
        return []
    if not isinstance(node, MappingNode):
        raise ctx.error(node, key, f"expected a mapping, got {describe(node)}")
    _reject_duplicate_keys(node, ctx)
    flattened = _unshared(node)
    try:
        ctx.constructor.flatten_mapping(flattened)
    except yaml.YAMLError as exc:
        raise ctx.error(node, key, _yaml_problem(exc)) from None
    items: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in flattened.value:
        items[_key_text(key_node, ctx)] = (key_node, value_node)
    return [(name, key_node, value_node) for name, (key_node, value_node) in items.items()]


def _unshared(node: MappingNode) -> MappingNode:
    """A copy PyYAML's flatten_mapping may rewrite. It rewrites in place each mapping a `<<`
    merges, and those are anchored nodes: another alias reaching one later would find the
    merged keys beside its own and read them as duplicates."""
    value = [(key, _unshared_merge(item) if key.tag == _MERGE_TAG else item)
             for key, item in node.value]  # fmt: skip
    return MappingNode(node.tag, value, node.start_mark, node.end_mark)


def _unshared_merge(node: Node) -> Node:
    if isinstance(node, MappingNode):
        return _unshared(node)
    if isinstance(node, SequenceNode):  # `<<: [*a, *b]`
        items = [_unshared_merge(item) for item in node.value]
        return SequenceNode(node.tag, items, node.start_mark, node.end_mark)
    return node  # not a mapping: flatten_mapping says so


def _reject_duplicate_keys(node: MappingNode, ctx: Context) -> None:
    first_seen: dict[str, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        name = _key_text(key_node, ctx)
        if name in first_seen:
            first_line = line(first_seen[name])
            raise ctx.error(key_node, name, f"duplicate key (first at line {first_line})")
        first_seen[name] = key_node


def _key_text(node: Node, ctx: Context) -> str:
    if not isinstance(node, ScalarNode) or is_null(node) or node.value == "":
        raise ctx.error(node, "key", f"keys must be plain names, got {describe(node)}")
    if len(node.value) > MAX_KEY_CHARS:
        problem = f"{len(node.value):,} characters, more than {MAX_KEY_CHARS:,} (dcctl's limit)"
        raise ctx.error(node, "key", problem)
    return str(node.value)
