"""Compose a YAML document into PyYAML nodes, refusing one that would exhaust the machine.

PyYAML's composer recurses once per nesting level (deep input ends in a RecursionError, or
a segfault in libyaml's), and gives every alias the very node of its anchor, so a walk over
the tree does the work of the tree with every alias written out: 30 levels of
`g1: {a: *g0, b: *g0}` are a billion visits, and `&a [*a]` is a node inside itself. This
composer is a loop over the parser's events that counts as it goes and stops at the first
event past a limit of `dcctl.inventory.limits`, naming its line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from dcctl.errors import InputError
from dcctl.inventory.limits import MAX_NESTING_DEPTH, MAX_YAML_VALUES
from dcctl.inventory.messages import shorten

# libyaml's parser is ~25 times faster than PyYAML's pure-Python one; use it when built in.
FAST_LOADER: type[yaml.SafeLoader] | None = getattr(yaml, "CSafeLoader", None)


class _Scalar(ScalarNode):
    """A scalar node without an attribute dict: 96 bytes instead of 352, and an inventory
    of 100,000 hosts holds a million of them."""

    __slots__ = ("end_mark", "start_mark", "style", "tag", "value")


class _Mapping(MappingNode):
    __slots__ = ("end_mark", "flow_style", "start_mark", "tag", "value")


class _Sequence(SequenceNode):
    __slots__ = ("end_mark", "flow_style", "start_mark", "tag", "value")


@dataclass
class _Open:
    """A list or mapping whose end event has not come yet."""

    node: CollectionNode
    anchor: str | None
    key: Node | None = None  # a mapping's key waiting for its value
    size: int = 1  # values in it, itself included, aliases written out
    height: int = 0  # levels below it, aliases written out


@dataclass(frozen=True)
class _Anchored:
    """A complete node that has an anchor, with what an alias to it costs."""

    node: Node
    size: int
    height: int
    line: int


@dataclass
class Composer:
    """Feed it events in order; `root` is the document's node once they are all in."""

    path: str
    root: Node | None = None
    values: int = 0  # in the document so far, aliases written out
    _stack: list[_Open] = field(default_factory=list)
    _anchors: dict[str, _Anchored | _Open] = field(default_factory=dict)
    # One mark per line, shared by its nodes: the line is all a message needs, and a mark
    # of its own per node would take a quarter of the memory.
    _marks: dict[int, Any] = field(default_factory=dict)
    _resolver: Resolver = field(default_factory=Resolver)

    def feed(self, event: Event) -> None:
        if isinstance(event, ScalarEvent):  # most events: tested first
            self._scalar(event)
        elif isinstance(event, CollectionStartEvent):
            self._open(event)
        elif isinstance(event, CollectionEndEvent):
            self._close()
        elif isinstance(event, AliasEvent):
            self._alias(event)
        elif isinstance(event, DocumentStartEvent) and self.root is not None:
            problem = "expected a single document in the stream but found another document"
            raise self._error(event, f"invalid YAML: {problem}")

    def _scalar(self, event: ScalarEvent) -> None:
        self.values += 1
        if self.values > MAX_YAML_VALUES:
            raise self._too_many(event)
        mark = self._mark(event)
        node = _Scalar(self._tag(event, ScalarNode, event.value), event.value, mark, mark,
                       style=event.style)  # fmt: skip
        if event.anchor is not None:
            self._anchor(event.anchor, event, _Anchored(node, 1, 0, _line(event)))
        self._attach(node, 1, 0)

    def _open(self, event: CollectionStartEvent) -> None:
        self._count(event, 1, 1)
        mark = self._mark(event)
        is_mapping = isinstance(event, MappingStartEvent)
        kind: type[CollectionNode] = _Mapping if is_mapping else _Sequence
        # The resolver knows the kinds by identity: PyYAML's classes, not these subclasses.
        tag = self._tag(event, MappingNode if is_mapping else SequenceNode, None)
        node = kind(tag, [], mark, mark, flow_style=event.flow_style)
        opened = _Open(node, event.anchor)
        if event.anchor is not None:
            self._anchor(event.anchor, event, opened)
        self._stack.append(opened)

    def _close(self) -> None:
        closed = self._stack.pop()
        if closed.anchor is not None:
            line = _node_line(closed.node)
            anchored = _Anchored(closed.node, closed.size, closed.height, line)
            self._anchors[closed.anchor] = anchored
        self._attach(closed.node, closed.size, closed.height)

    def _alias(self, event: AliasEvent) -> None:
        name = str(event.anchor)
        target = self._anchors.get(name)
        if target is None:
            shown = shorten(name)
            problem = f"alias '*{shown}' comes before any anchor '&{shown}'"
            raise self._error(event, f"invalid YAML: {problem}")
        if isinstance(target, _Open):
            # Walking it would never end: the anchored value contains itself.
            shown = shorten(name)
            problem = f"alias '*{shown}' is inside the value '&{shown}' names"
            raise self._error(event, f"{problem}; recursive aliases are not supported")
        self._count(event, target.size, target.height)
        self._attach(target.node, target.size, target.height)

    def _count(self, event: NodeEvent, size: int, height: int) -> None:
        """Refuse the event that takes the document past a limit, before keeping anything."""
        self.values += size
        if self.values > MAX_YAML_VALUES:
            raise self._too_many(event)
        if len(self._stack) + height > MAX_NESTING_DEPTH:
            problem = f"nested more than {MAX_NESTING_DEPTH} levels deep"
            if isinstance(event, AliasEvent):
                problem = f"alias '*{shorten(str(event.anchor))}' makes the document {problem}"
            raise self._error(event, f"{problem} (dcctl's limit for an inventory)")

    def _too_many(self, event: NodeEvent) -> InputError:
        problem = f"more than {MAX_YAML_VALUES:,} values"
        if isinstance(event, AliasEvent):
            problem = f"alias '*{shorten(str(event.anchor))}' expands the document to {problem}"
        return self._error(event, f"{problem} (dcctl's limit for an inventory)")

    def _anchor(self, name: str, event: NodeEvent, entry: _Anchored | _Open) -> None:
        first = self._anchors.get(name)
        if first is not None:
            first_line = first.line if isinstance(first, _Anchored) else _node_line(first.node)
            problem = f"duplicate anchor '&{shorten(name)}' (first at line {first_line})"
            raise self._error(event, f"invalid YAML: {problem}")
        self._anchors[name] = entry

    def _attach(self, node: Node, size: int, height: int) -> None:
        if not self._stack:
            self.root = node
            return
        parent = self._stack[-1]
        parent.size += size
        if height >= parent.height:
            parent.height = height + 1
        if not isinstance(parent.node, MappingNode):
            parent.node.value.append(node)
        elif parent.key is None:
            parent.key = node
        else:
            parent.node.value.append((parent.key, node))
            parent.key = None

    def _tag(self, event: ScalarEvent | CollectionStartEvent, kind: type[Node], value: Any) -> str:
        """As PyYAML's composer: an untagged node gets the tag its plain text implies."""
        if event.tag is not None and event.tag != "!":
            return str(event.tag)
        resolve: Any = self._resolver.resolve  # untyped in types-PyYAML
        return str(resolve(kind, value, event.implicit))

    def _mark(self, event: Event) -> Any:
        mark: Any = event.start_mark
        return self._marks.setdefault(mark.line, mark)

    def _error(self, event: Event, problem: str) -> InputError:
        return InputError(f"{self.path}:{_line(event)}: {problem}")


def _line(event: Event) -> int:
    mark: Any = event.start_mark  # the parser gives every event one
    return int(mark.line) + 1


def _node_line(node: Node) -> int:
    return int(node.start_mark.line) + 1
