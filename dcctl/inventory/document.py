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

_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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


def read_text(path: str) -> str:
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


def compose(text: str, path: str) -> Node:
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
    if node.tag == _STR_TAG:
        return f"'{node.value}'"
    return str(node.value)


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
    flattened = MappingNode(node.tag, list(node.value), node.start_mark, node.end_mark)
    try:
        ctx.constructor.flatten_mapping(flattened)
    except yaml.YAMLError as exc:
        raise ctx.error(node, key, _yaml_problem(exc)) from None
    items: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in flattened.value:
        items[_key_text(key_node, ctx)] = (key_node, value_node)
    return [(name, key_node, value_node) for name, (key_node, value_node) in items.items()]


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
    return str(node.value)
