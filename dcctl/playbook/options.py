"""The options a playbook step may give its command, with the ranges the command line accepts.

A step's options are the command's long options with `_` for `-` (`net_only` for
`--net-only`), read from YAML nodes so a bad value names its file and line. Every step gets
the full set, the command's defaults filled in, so the caller hands them on as they are; size
and sweep stay in the command line's text form (`"8192"`, `"1K:8G"`), which the command
parses itself.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer
from yaml.nodes import Node, ScalarNode, SequenceNode

from dcctl.cli.bench import DTYPES, MAX_SOAK_S, parse_size, parse_sweep
from dcctl.cli.bounds import DEFAULT_JOIN_TIMEOUT_S, MAX_RANKS_PER_NODE, MAX_TIMEOUT_S
from dcctl.cli.certify import MAX_STEPS
from dcctl.inventory.document import Context, describe, is_null
from dcctl.playbook.model import Playbook, StepKind

Reader = Callable[[Node, str, Context], Any]
_STANDARD_TAG_PREFIX = "tag:yaml.org,2002:"

BENCHMARKS = ("gemm", "allreduce", "fio", "all")
SCOPES = ("node", "cluster", "pairs")
# Options that only a job spanning nodes reads (bench scope cluster or pairs).
GANG_ONLY = ("net_only", "nproc_per_node", "port", "join_timeout")
# bench options, and the benchmarks that read them.
READ_BY: Mapping[str, tuple[str, ...]] = {
    "dtype": ("gemm", "all"),
    "size": ("gemm", "all"),
    "duration": ("gemm", "all"),
    "sizes": ("allreduce", "all"),
}


@dataclass(frozen=True)
class Option:
    """One option: its value when the step leaves it out (or sets it to null), and how a
    YAML node becomes its typed value (raising the Context's error when it cannot)."""

    default: Any
    read: Reader


def _as_bool(node: Node, key: str, ctx: Context) -> bool:
    value = ctx.construct(node, key)
    if not isinstance(value, bool):
        raise ctx.error(node, key, f"expected true or false, got {describe(node)}")
    return value


def _whole(low: int, high: int) -> Reader:
    def read(node: Node, key: str, ctx: Context) -> int:
        value = ctx.construct(node, key)
        # Booleans are ints to Python but not to a person writing `port: yes`.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problem = f"expected a whole number from {low} to {high}, got {describe(node)}"
            raise ctx.error(node, key, problem)
        return value

    return read


def seconds(low: float, high: float) -> Reader:
    def read(node: Node, key: str, ctx: Context) -> float:
        value = ctx.construct(node, key)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        # `.inf` and `.nan` are YAML floats: refused here as the command line refuses them.
        if not number or not math.isfinite(value) or not low <= value <= high:
            problem = f"expected seconds from {low:g} to {high:g}, got {describe(node)}"
            raise ctx.error(node, key, problem)
        return float(value)

    return read


def choice(*choices: str) -> Reader:
    def read(node: Node, key: str, ctx: Context) -> str:
        value = ctx.construct(node, key)
        if value not in choices or not isinstance(value, str):
            problem = f"expected one of {', '.join(choices)}, got {describe(node)}"
            raise ctx.error(node, key, problem)
        return value

    return read


def _dtypes(node: Node, key: str, ctx: Context) -> list[str]:
    """A list of dtypes, or one dtype alone; repeats are dropped, as on the command line."""
    items = node.value if isinstance(node, SequenceNode) else [node]
    if not items:
        raise ctx.error(node, key, f"expected one or more of {', '.join(DTYPES)}, got []")
    read = choice(*DTYPES)
    return list(dict.fromkeys(read(item, key, ctx) for item in items))


def _as_written(parse: Callable[[str], object]) -> Reader:
    """A scalar kept as the text written, checked by the command's own parser: YAML would
    read `64:32` as the sexagesimal integer 3872."""

    def read(node: Node, key: str, ctx: Context) -> str:
        if not isinstance(node, ScalarNode) or not node.tag.startswith(_STANDARD_TAG_PREFIX):
            raise ctx.error(node, key, f"expected text, got {describe(node)}")
        text = str(node.value).strip()
        try:
            parse(text)
        except typer.BadParameter as exc:
            raise ctx.error(node, key, exc.message) from None
        return text

    return read


_FLAG = Option(False, _as_bool)
_NPROC = Option(None, _whole(1, MAX_RANKS_PER_NODE))
_PORT = Option(None, _whole(1, 65535))
_JOIN = Option(DEFAULT_JOIN_TIMEOUT_S, seconds(1.0, MAX_TIMEOUT_S))

# The defaults are those of `dcctl check`, `bench` and `certify` (a test holds them equal).
OPTIONS: Mapping[StepKind, Mapping[str, Option]] = {
    "check": {"dcgm": Option(None, _whole(1, 3))},
    "bench": {
        "benchmark": Option("all", choice(*BENCHMARKS)),
        "quick": _FLAG,
        "dtype": Option([], _dtypes),
        "size": Option(None, _as_written(parse_size)),
        "sizes": Option(None, _as_written(parse_sweep)),
        "duration": Option(0.0, seconds(0.0, MAX_SOAK_S)),
        "scope": Option("node", choice(*SCOPES)),
        "net_only": _FLAG,
        "nproc_per_node": _NPROC,
        "port": _PORT,
        "join_timeout": _JOIN,
    },
    "certify": {
        "quick": _FLAG,
        "steps": Option(None, _whole(1, MAX_STEPS)),
        "nproc_per_node": _NPROC,
        "port": _PORT,
        "join_timeout": _JOIN,
    },
}


def defaults(kind: StepKind) -> dict[str, Any]:
    """Every option of `kind` at its default; a fresh copy (the dtype list is not shared)."""
    return {name: _copy(option.default) for name, option in OPTIONS[kind].items()}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def read_option(kind: StepKind, name: str, node: Node, key: str, ctx: Context) -> Any:
    """The typed value of option `name` (known to be one of `kind`'s); null is its default."""
    option = OPTIONS[kind][name]
    return _copy(option.default) if is_null(node) else option.read(node, key, ctx)


def check_bench(options: Mapping[str, Any], given: Mapping[str, Node], ctx: Context) -> None:
    """Options a bench step sets that its benchmark or scope never reads: refused, as
    `dcctl bench` refuses `--scope cluster` for gemm, rather than silently ignored.
    `given` holds the value node of each option the step wrote."""
    benchmark, scope = options["benchmark"], options["scope"]
    if scope != "node" and benchmark != "allreduce":
        problem = f"only allreduce spans nodes; scope {scope} needs benchmark: allreduce"
        raise ctx.error(given["scope"], "bench.scope", problem)
    for name in GANG_ONLY:
        if name in given and scope == "node":
            raise ctx.error(given[name], f"bench.{name}", "applies to scope cluster or pairs only")
    for name, readers in READ_BY.items():
        if name in given and benchmark not in readers:
            problem = f"benchmark {benchmark} does not read it (only {' or '.join(readers)})"
            raise ctx.error(given[name], f"bench.{name}", problem)


def default_name(kind: StepKind, options: Mapping[str, Any]) -> str:
    """A step's name when it gives none: `check`, `certify`, `bench-gemm`,
    `bench-allreduce-cluster`."""
    if kind != "bench":
        return kind
    name = f"bench-{options['benchmark']}"
    return name if options["scope"] == "node" else f"{name}-{options['scope']}"


def with_quick(playbook: Playbook) -> Playbook:
    """`dcctl run PLAYBOOK --quick`: quick on every step that has the option."""
    steps = tuple(
        dataclasses.replace(step, options={**step.options, "quick": True})
        if "quick" in OPTIONS[step.kind]
        else step
        for step in playbook.steps
    )
    return dataclasses.replace(playbook, steps=steps)
