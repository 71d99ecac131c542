"""Read an inventory file into PyYAML nodes, and the node helpers every later step uses.

The document is composed into nodes rather than loaded into plain objects so every error
can name the file and line it comes from; values are constructed one node at a time, only
for the keys dcctl reads (an `ansible_*` value dcctl ignores may hold a `!vault` tag).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import BaseConstructor, ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.errors import InputError
from dcctl.inventory.composer import FAST_LOADER, Composer
from dcctl.inventory.limits import MAX_INVENTORY_BYTES, MAX_KEY_CHARS
from dcctl.inventory.messages import shorten

_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"  # the `=` key, which PyYAML reads as a string
_Pairs = list[tuple[Node, Node]]
# PyYAML's own wording of a problem is cut past this: it can quote a tag or value whole.
_PROBLEM_CHARS = 200
# Up to here a syntax error is re-read with PyYAML for its clearer message: ~1 s at most.
REPARSE_MAX_CHARS = 256 * 1024


@dataclass(frozen=True)
class Context:
    """Where the document came from, for messages, and the constructor for scalar values."""

    path: str
    constructor: SafeConstructor
    # Problems that do not stop the load, each once, as `file:line: key: problem`.
    warnings: list[str] = field(default_factory=list)

    def error(self, node: Node, key: str, problem: str) -> InputError:
        return InputError(f"{self.path}:{line(node)}: {key}: {problem}")

    def warn(self, node: Node, key: str, problem: str) -> None:
        message = f"{self.path}:{line(node)}: {key}: {problem}"
        if message not in self.warnings:
            self.warnings.append(message)

    def construct(self, node: Node, key: str) -> Any:
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, key, _yaml_problem(exc)) from None
        except (ValueError, LookupError, AttributeError):
            # Python's own limits on what the YAML type implies: an integer of more than
            # 4300 digits, a timestamp such as 2024-13-45. And PyYAML's constructors trust a
            # scalar to look like its type, which holds when the type was read from the text
            # but not for an explicit tag: `!!bool maybe` is a KeyError, `!!int -` an
            # IndexError, `!!timestamp x` an AttributeError.
            kind = shorten(node.tag.rsplit(":", 1)[-1])
            raise self.error(node, key, f"cannot be read as a YAML {kind}") from None


class ValueConstructor(SafeConstructor):
    """PyYAML's safe constructor, with `<<` merges resolved by `flattened`: in one pass, and
    without rewriting the nodes, which aliases elsewhere in the document may reach."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        if isinstance(node, MappingNode):
            node = MappingNode(node.tag, flattened(node), node.start_mark, node.end_mark)
        return BaseConstructor.construct_mapping(self, node, deep=deep)


def read_text(path: str, kind: str = "inventory", limit: int = MAX_INVENTORY_BYTES) -> str:
    """The file's text, or one InputError line naming it (`kind`: what the file should be)."""
    try:
        with open(path, "rb") as handle:
            # One byte past the limit tells a file that is too large without reading it all.
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise InputError(f"{path}: {kind} file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not {_article(kind)} {kind} file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {kind}: {exc.strerror}") from None
    if len(data) > limit:
        size = f"{limit // 2**20} MiB"
        raise InputError(
            f"{path}: larger than {size}, dcctl's limit for {_article(kind)} {kind} file"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None


def _article(noun: str) -> str:
    return "an" if noun[:1] in "aeiou" else "a"


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
    # Some quote the input whole: a tag of any length in "could not determine a constructor".
    return shorten(" ".join(text.split()), _PROBLEM_CHARS)


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
    text = shorten(str(node.value))
    return f"'{text}'" if node.tag == _STR_TAG else text


def mapping_items(node: Node, key: str, ctx: Context) -> list[tuple[str, Node, Node]]:
    """(key, key node, value node) in document order; `null` counts as an empty mapping.

    Of two equal keys the later one's value is used, as in Ansible (and PyYAML), with a
    warning: a second `hosts:` under one group drops every host of the first.
    `<<: *anchor` merge keys are honoured, explicit keys overriding merged ones.
    """
    if is_null(node):
        return []
    if not isinstance(node, MappingNode):
        raise ctx.error(node, key, f"expected a mapping, got {describe(node)}")
    _warn_duplicate_keys(node, ctx)
    try:
        pairs = flattened(node)
    except yaml.YAMLError as exc:
        raise ctx.error(node, key, _yaml_problem(exc)) from None
    items: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in pairs:
        items[_key_text(key_node, ctx)] = (key_node, value_node)
    return [(name, key_node, value_node) for name, (key_node, value_node) in items.items()]


def flattened(node: MappingNode) -> _Pairs:
    """The pairs of `node` with its `<<` merge keys resolved, in the order PyYAML's
    `flatten_mapping` gives them: every merged pair first, then the node's own, so that where
    a key repeats the later pair wins. Merges are taken in the order of their `<<` keys (a
    file may hold several, as PyYAML and so Ansible accept), and `<<: [*a, *b]` puts b's
    pairs before a's, so the first mapping listed wins.

    One pass, and `node` is left as it is: PyYAML deletes each `<<` from the list it walks,
    quadratic in their number (900,000 `<<:` lines took minutes), and rewrites the merged
    mappings in place, though they are anchored nodes that other aliases reach."""
    merged: _Pairs = []
    own: _Pairs = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            merged += _merged_pairs(node, value_node)
        elif key_node.tag == _VALUE_TAG:
            as_str = ScalarNode(_STR_TAG, key_node.value, key_node.start_mark, key_node.end_mark)
            own.append((as_str, value_node))
        else:
            own.append((key_node, value_node))
    return merged + own if merged else own


def _merged_pairs(node: MappingNode, value: Node) -> _Pairs:
    """The pairs one `<<` key brings. Recursion follows merges of merges, as deep as the
    document nests, which the composer bounds."""
    if isinstance(value, MappingNode):
        return flattened(value)
    if not isinstance(value, SequenceNode):
        raise _merge_error(node, value, "a mapping or list of mappings")
    for item in value.value:
        if not isinstance(item, MappingNode):
            raise _merge_error(node, item, "a mapping")
    pairs: _Pairs = []
    for item in reversed(value.value):
        pairs += flattened(item)
    return pairs


def _merge_error(node: MappingNode, found: Node, expected: str) -> ConstructorError:
    """PyYAML's own error for a `<<` of something that is not a mapping."""
    kind: str = getattr(found, "id", "node")  # 'scalar', 'sequence', 'mapping'
    problem = f"expected {expected} for merging, but found {kind}"
    return ConstructorError("while constructing a mapping", node.start_mark, problem,
                            found.start_mark)  # fmt: skip


def _warn_duplicate_keys(node: MappingNode, ctx: Context) -> None:
    first_seen: dict[str, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        name = _key_text(key_node, ctx)
        if name in first_seen:
            first_line = line(first_seen[name])
            problem = (
                f"duplicate key (first at line {first_line}); the later one is used, as in Ansible"
            )
            ctx.warn(key_node, name, problem)
        else:
            first_seen[name] = key_node


def _key_text(node: Node, ctx: Context) -> str:
    if not isinstance(node, ScalarNode) or is_null(node) or node.value == "":
        raise ctx.error(node, "key", f"keys must be plain names, got {describe(node)}")
    if len(node.value) > MAX_KEY_CHARS:
        problem = f"{len(node.value):,} characters, more than {MAX_KEY_CHARS:,} (dcctl's limit)"
        raise ctx.error(node, "key", problem)
    return str(node.value)
