"""Read a playbook file into a `Playbook`, refusing a bad one before anything runs.

Every problem is one line, `FILE:LINE: KEY: problem` (exit 2). The file is read the way the
inventory is, into PyYAML nodes that know their lines (anchors, aliases and `<<` merges
included), and each `expect` is checked by the inventory's own validator, so a threshold
means the same in a playbook as in an inventory.

    name: acceptance
    description: what it is for
    steps:
      - check: {}                     # exactly one of check, bench, certify: its options
        timeout: 120                  # seconds; unset keeps the command's default
        on_fail: continue             # or stop (the default)
      - name: gemm                    # unique; default check, certify, bench-gemm,
        bench: {benchmark: gemm}      #   bench-allreduce-cluster ...
        expect: {gemm_min_efficiency: 0.7}

Top-level keys starting with `x-` are ignored (as in Compose files): a place for anchors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from dcctl.cli.bounds import MAX_TIMEOUT_S
from dcctl.errors import InputError
from dcctl.inventory.composer import Composer
from dcctl.inventory.document import (
    Context,
    ValueConstructor,
    describe,
    is_null,
    line,
    mapping_items,
    read_text,
)
from dcctl.inventory.messages import shorten
from dcctl.inventory.variables import hint, parse_expect
from dcctl.playbook.model import STEP_KINDS, OnFail, Playbook, PlaybookStep, StepKind
from dcctl.playbook.options import (
    OPTIONS,
    Reader,
    check_bench,
    choice,
    default_name,
    defaults,
    read_option,
    seconds,
)

# A playbook is a page of YAML; this only stops a wrong path (a log, an image) early.
MAX_PLAYBOOK_BYTES = 1024 * 1024
TOP_KEYS = ("name", "description", "steps")
STEP_KEYS = ("name", *STEP_KINDS, "timeout", "on_fail", "expect")
EXTENSION_PREFIX = "x-"
# Step names appear in file names, the history and Prometheus labels: kept plain.
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"
_Items = dict[str, tuple[Node, Node]]

_read_timeout = seconds(1.0, MAX_TIMEOUT_S)
_read_on_fail = choice("continue", "stop")


def load_playbook(path: str) -> Playbook:
    """The playbook at `path`; InputError naming file, line and key for anything wrong."""
    ctx = Context(path=path, constructor=ValueConstructor())
    text = _read(path)
    root = _compose(text, path)
    if not isinstance(root, MappingNode):
        problem = f"expected a mapping with 'steps:', got {describe(root)}"
        raise ctx.error(root, "top level", problem)
    top = _items(root, "", TOP_KEYS, ctx, extensions=True)
    if "steps" not in top:
        raise ctx.error(root, "steps", "missing; a playbook lists what it runs under 'steps:'")
    name = _text(top["name"][1], "name", ctx) if "name" in top else PurePath(path).stem
    steps = _steps(top["steps"][1], ctx)
    about = _text(top["description"][1], "description", ctx) if "description" in top else ""
    return Playbook(name=name, source=path, steps=steps, description=about, text=text)


def _steps(node: Node, ctx: Context) -> tuple[PlaybookStep, ...]:
    if not isinstance(node, SequenceNode):
        raise ctx.error(node, "steps", f"expected a list of steps, got {describe(node)}")
    if not node.value:
        raise ctx.error(node, "steps", "empty; a playbook needs at least one step")
    steps: list[PlaybookStep] = []
    first_line: dict[str, int] = {}
    for item in node.value:
        step, name_node = _step(item, ctx)
        if step.name in first_line:
            problem = (
                f"duplicate step name '{step.name}' (first at line {first_line[step.name]}); "
                "give each step its own 'name:'"
            )
            raise ctx.error(name_node, "name", problem)
        first_line[step.name] = step.line
        steps.append(step)
    return tuple(steps)


def _step(node: Node, ctx: Context) -> tuple[PlaybookStep, Node]:
    """The step, and the node its name comes from (for a duplicate name's message)."""
    if not isinstance(node, MappingNode):
        problem = f"expected a step such as '- check: {{}}', got {describe(node)}"
        raise ctx.error(node, "steps", problem)
    items = _items(node, "", STEP_KEYS, ctx)
    kinds = [key for key in items if key in STEP_KINDS]
    if not kinds:
        raise ctx.error(node, "steps", "a step needs one of check, bench or certify")
    if len(kinds) > 1:
        problem = f"a step runs one command, and this one also has '{kinds[0]}'"
        raise ctx.error(items[kinds[1]][0], kinds[1], problem)
    kind = kinds[0]
    kind_key, kind_value = items[kind]
    options = _options(kind, kind_value, ctx)
    name_node = items["name"][1] if "name" in items else kind_key
    step = PlaybookStep(
        name=_step_name(items["name"][1], ctx) if "name" in items else default_name(kind, options),
        kind=kind,
        options=options,
        expect=_expect(items["expect"][1], ctx) if "expect" in items else {},
        timeout_s=_optional(items, "timeout", _read_timeout, ctx),
        on_fail=cast(OnFail, _optional(items, "on_fail", _read_on_fail, ctx) or "stop"),
        line=line(node),
    )
    return step, name_node


def _options(kind: StepKind, node: Node, ctx: Context) -> dict[str, Any]:
    options = defaults(kind)
    if is_null(node):
        return options  # `- check:` with nothing after it
    if not isinstance(node, MappingNode):
        problem = f"expected a mapping of {kind} options, got {describe(node)}"
        if kind == "bench" and isinstance(node, ScalarNode):
            problem += f"; write {{benchmark: {shorten(str(node.value))}}}"
        raise ctx.error(node, kind, problem)
    misplaced = {key: f"belongs to the step, beside '{kind}:'" for key in STEP_KEYS}
    items = _items(node, f"{kind}.", tuple(OPTIONS[kind]), ctx, misplaced=misplaced)
    given: dict[str, Node] = {}
    for name, (_, value_node) in items.items():
        options[name] = read_option(kind, name, value_node, f"{kind}.{name}", ctx)
        if not is_null(value_node):
            given[name] = value_node
    if kind == "bench":
        check_bench(options, given, ctx)
    return options


def _expect(node: Node, ctx: Context) -> dict[str, Any]:
    """Checked by the inventory's validator; a null value unsets the inventory's for this
    step, and is kept as None for the caller's merge to drop."""
    if isinstance(node, MappingNode):
        _refuse_duplicates(node, "expect.", ctx)
    return parse_expect(node, "expect", ctx)


def _optional(items: _Items, key: str, read: Reader, ctx: Context) -> Any:
    if key not in items or is_null(items[key][1]):
        return None
    return read(items[key][1], key, ctx)


def _step_name(node: Node, ctx: Context) -> str:
    text = _text(node, "name", ctx)
    if not _STEP_NAME.match(text):
        problem = (
            "expected letters, digits, '.', '_' and '-' (up to 64, starting with a letter or "
            f"digit), got {describe(node)}"
        )
        raise ctx.error(node, "name", problem)
    return text


def _text(node: Node, key: str, ctx: Context) -> str:
    value = ctx.construct(node, key) if isinstance(node, ScalarNode) else None
    if not isinstance(value, str) or not value.strip():
        raise ctx.error(node, key, f"expected a non-empty string, got {describe(node)}")
    return value.strip()


def _items(
    node: MappingNode,
    prefix: str,
    allowed: tuple[str, ...],
    ctx: Context,
    *,
    extensions: bool = False,
    misplaced: Mapping[str, str] | None = None,
) -> _Items:
    """The mapping's entries by key (`<<` merges resolved, explicit keys winning); a key
    written twice, or one not in `allowed`, is refused. Keys are named `prefix + key`."""
    _refuse_duplicates(node, prefix, ctx)
    items: _Items = {}
    for key, key_node, value_node in mapping_items(node, prefix.rstrip(".") or "key", ctx):
        if extensions and key.startswith(EXTENSION_PREFIX):
            continue
        if key not in allowed:
            problem = (misplaced or {}).get(key)
            if problem is None:
                listed = f"; expected one of {', '.join(allowed)}"
                problem = "unknown key" + (hint(key.replace("-", "_"), allowed) or listed)
            raise ctx.error(key_node, prefix + key, problem)
        items[key] = (key_node, value_node)
    return items


def _refuse_duplicates(node: MappingNode, prefix: str, ctx: Context) -> None:
    """A key written twice in one mapping: YAML would keep the later one, which in a
    playbook is a step silently lost or a threshold silently changed."""
    first: dict[str, Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue
        key = str(key_node.value)
        if key in first:
            problem = f"written twice (first at line {line(first[key])})"
            raise ctx.error(key_node, prefix + key, problem)
        first[key] = key_node


def _read(path: str) -> str:
    return read_text(path, "playbook", MAX_PLAYBOOK_BYTES)


def _compose(text: str, path: str) -> Node:
    """The document's root node, through the inventory's bounded composer. PyYAML's own
    parser rather than libyaml's: a playbook is small, and its messages name the character
    at fault."""
    composer = Composer(path)
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            composer.feed(event)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise InputError(f"{where}: invalid YAML: {_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {shorten(' '.join(str(exc).split()))}") from None
    if composer.root is None:
        raise InputError(f"{path}: playbook is empty; expected a mapping with 'steps:'")
    return composer.root


def _problem(exc: yaml.MarkedYAMLError) -> str:
    text = exc.problem or exc.context or "malformed document"
    if exc.context and text.startswith("but "):
        text = f"{exc.context} {text}"  # PyYAML splits some sentences in two
    return shorten(" ".join(text.split()), 200)
