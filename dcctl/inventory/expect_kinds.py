"""The kinds of value an `expect` key takes, each checked in one place.

A kind turns a value into the plain validated value an inventory keeps (JSON-safe: a host's
`expect` is printed by `inventory show --json`), and that into the typed value an evaluator
reads (a parsed version requirement; for every other kind the plain value itself). The
inventory validator feeds it YAML nodes, naming file and line; `Expectations` feeds it plain
values (a test's dict, JSON) under the same rules and the same wording, so the two can never
disagree on what is valid.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dcctl.evaluate.versions import parse_requirement
from dcctl.inventory.messages import shorten

# Jinja marks in a path dcctl would use on the node: the same refusal as other variables.
TEMPLATE_MARKS = ("{{", "{%", "{#")
JINJA_PROBLEM = "Jinja templates are not supported; write the value out"


class Mismatch(ValueError):
    """A value that is not of its kind. `expected` ends "expected ..., got <value>"; `detail`,
    where set, is the whole sentence instead (a version requirement says what is wrong)."""

    def __init__(self, expected: str, detail: str | None = None) -> None:
        super().__init__(detail or expected)
        self.expected = expected
        self.detail = detail

    def problem(self, got: str) -> str:
        return self.detail or f"expected {self.expected}, got {got}"


class BadExpectation(ValueError):
    """An `expect` value of the wrong kind that reached an evaluator without passing the
    inventory (a dict built in code, JSON); reported as an `error` result for its check."""

    def __init__(self, where: str, problem: str, value: Any = None) -> None:
        super().__init__(f"invalid expectation {where}: {problem}")
        self.value = value


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Scalar:
    """One value. `check` returns the plain value or raises Mismatch; `as_written` hands it
    the scalar's text as written (`cuda: 12.10` stays '12.10', not the float 12.1)."""

    expected: str
    check: Callable[[Any], Any]
    as_written: bool = False
    typed: Callable[[Any], Any] = _same


@dataclass(frozen=True)
class ListOf:
    """A list whose every item is `item`; bounded by the inventory's entry limit."""

    item: Scalar
    expected: str


@dataclass(frozen=True)
class MappingOf:
    """A mapping of `key` to `value`. Keys arrive as text (YAML keys, JSON keys)."""

    key: Scalar
    value: Scalar
    expected: str


Kind = Scalar | ListOf | MappingOf


def describe_value(value: Any) -> str:
    """How a plain value reads in a message, as the inventory shows a YAML node."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return f"'{shorten(value)}'" if isinstance(value, str) else shorten(str(value))


def coerce(kind: Kind, value: Any, where: str) -> Any:
    """The plain validated value of a plain `value`; BadExpectation names `where`."""
    if isinstance(kind, Scalar):
        return _checked(kind, value, where)
    if isinstance(kind, ListOf):
        if not isinstance(value, (list, tuple)):
            raise BadExpectation(where, f"expected {kind.expected}, got {describe_value(value)}")
        return [_checked(kind.item, item, where) for item in value]
    if not isinstance(value, Mapping):
        raise BadExpectation(where, f"expected {kind.expected}, got {describe_value(value)}")
    checked = {}
    for name, entry in value.items():
        entry_where = f"{where}.{name}"
        checked[_checked(kind.key, str(name), entry_where)] = _checked(
            kind.value, entry, entry_where
        )
    return checked


def typed(kind: Kind, plain: Any) -> Any:
    """The value an evaluator reads, from a plain validated one."""
    return kind.typed(plain) if isinstance(kind, Scalar) else plain


def _checked(kind: Scalar, value: Any, where: str) -> Any:
    try:
        return kind.check(value)
    except Mismatch as exc:
        raise BadExpectation(where, exc.problem(describe_value(value)), value) from None


# --- the kinds ---------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    # Booleans are ints to Python but not to a person writing `gpu_count: yes`.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(expected: str, least: int) -> Scalar:
    def check(value: Any) -> int:
        if not _is_int(value) or value < least:
            raise Mismatch(expected)
        return int(value)

    return Scalar(expected, check)


def _number(expected: str, accepts: Callable[[float], bool]) -> Scalar:
    def check(value: Any) -> float:
        # An int stays an int: `min_memory_gb: 1900` is reported as 1900, not 1900.0.
        if not _is_number(value) or not accepts(value):
            raise Mismatch(expected)
        return value  # type: ignore[no-any-return]

    return Scalar(expected, check)


def _choice(*choices: str, true: str = "on") -> Scalar:
    """One of `choices`, in any case. YAML 1.1 reads a bare on/off (and yes/no) as a boolean:
    False is 'off', True is `true` ('on', or 'required' for the auto/required/off kind)."""
    expected = _alternatives(choices)

    def check(value: Any) -> str:
        if isinstance(value, bool):
            value = true if value else "off"
        wanted = value.strip().lower() if isinstance(value, str) else None
        if wanted not in choices:
            raise Mismatch(expected)
        return wanted

    return Scalar(expected, check)


def _alternatives(choices: tuple[str, ...]) -> str:
    """Choices as a message lists them: 'auto', 'required' or 'off'."""
    quoted = [repr(choice) for choice in choices]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def _glob(value: Any) -> str:
    if not isinstance(value, str):
        raise Mismatch("a glob string")
    return value


def _requirement(value: Any) -> Any:
    try:
        parse_requirement(value)
    except ValueError as exc:
        raise Mismatch("a version requirement", str(exc)) from None
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Mismatch("true or false")
    return value


def _absolute_path(value: Any) -> str:
    if isinstance(value, str) and any(mark in value for mark in TEMPLATE_MARKS):
        raise Mismatch("an absolute path", JINJA_PROBLEM)
    # The path lives on the node, which is Linux, whatever this machine runs.
    if not isinstance(value, str) or not posixpath.isabs(value):
        raise Mismatch("an absolute path")
    return value


def _xid_number(value: Any) -> int:
    # Mapping keys arrive as text: `63:` in YAML, "63" in JSON.
    text = str(value)
    if not (text.isascii() and text.isdigit()):
        raise Mismatch("an XID number")
    return int(text)


GLOB = Scalar("a glob string", _glob, as_written=True)
VERSION = Scalar("a version requirement", _requirement, as_written=True, typed=parse_requirement)
COUNT = _whole("a whole number >= 0", 0)
POSITIVE_COUNT = _whole("a whole number > 0", 1)
AMOUNT = _number("a number >= 0", lambda value: value >= 0)
POSITIVE_AMOUNT = _number("a number > 0", lambda value: value > 0)
FRACTION = _number("a fraction from 0 to 1", lambda value: 0 <= value <= 1)
BOOL = Scalar("true or false", _bool)
ON_OFF = _choice("on", "off")
ON_OFF_ANY = _choice("on", "off", "any")
MODE = _choice("auto", "required", "off", true="required")
MOUNT_POINTS = ListOf(Scalar("an absolute path", _absolute_path), "a list of mount points")
XID_LIST = ListOf(COUNT, "a list of whole numbers")
XID_STATUSES = ("fail", "warn", "count", "ignore")
XID_STATUS_MAP = MappingOf(
    Scalar("an XID number", _xid_number),
    _choice(*XID_STATUSES),
    f"a mapping of XID number to {_alternatives(XID_STATUSES)}",
)
