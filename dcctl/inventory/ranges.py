"""Host ranges, as in Ansible inventories: `gpu[001:016]`, `node[1:10:2]`, `rack[a:f]`.

A name may hold several ranges; it expands to their cartesian product, leftmost range
varying slowest, so `r[1:2]n[1:2]` gives r1n1, r1n2, r2n1, r2n2.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from collections.abc import Sequence
from typing import overload

from dcctl.errors import InputError
from dcctl.inventory.limits import MAX_HOSTS
from dcctl.inventory.messages import shorten

# A typo such as `node[1:1000000000]` must fail fast instead of filling memory: the names a
# pattern stands for are counted before any is made.
MAX_EXPANSION = MAX_HOSTS
# Digits in a numeric bound: 18 keep every count exact and far below any limit.
_MAX_DIGITS = 18
_DIGITS = re.compile(r"[0-9]+\Z")

# `[x:y]` or `[x:y:z]` somewhere in the text; `[abc]` alone is a glob character class.
_RANGE_LIKE = re.compile(r"\[[^\[\]]*:[^\[\]]*\]")


class HostRangeError(InputError):
    """A malformed host range. `reason` is the message without the pattern, for callers
    that add their own location (an inventory line, the --limit option)."""

    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(f"{shorten(pattern)}: bad host range: {reason}")
        self.pattern = pattern
        self.reason = reason


def has_host_range(text: str) -> bool:
    """True when `text` holds something shaped like `[start:end]`."""
    return _RANGE_LIKE.search(text) is not None


def expand_host_range(pattern: str) -> list[str]:
    """Every name `pattern` stands for, in order; a name without brackets is itself."""
    if "[" not in pattern and "]" not in pattern:
        return [pattern]  # the common case, and 100,000 times in a large inventory
    parts = _split_parts(pattern)
    total = math.prod(len(choices) for choices in parts)
    if total > MAX_EXPANSION:
        raise HostRangeError(pattern, f"expands to {total} names, more than {MAX_EXPANSION:,}")
    return ["".join(combo) for combo in itertools.product(*parts)]


class _Numbers(Sequence[str]):
    """The numbers of a range as zero-padded text, made one at a time: counting them is free."""

    def __init__(self, numbers: range, width: int) -> None:
        self._numbers = numbers
        self._width = width

    def __len__(self) -> int:
        return len(self._numbers)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return _Numbers(self._numbers[index], self._width)
        return str(self._numbers[index]).zfill(self._width)


def _split_parts(pattern: str) -> list[Sequence[str]]:
    """Literal text becomes a one-choice part, each `[...]` the values it covers."""
    parts: list[Sequence[str]] = []
    position = 0
    while position < len(pattern):
        opening = pattern.find("[", position)
        literal_end = len(pattern) if opening < 0 else opening
        _reject_stray_closing(pattern, pattern[position:literal_end])
        parts.append([pattern[position:literal_end]])
        if opening < 0:
            break
        closing = _matching_bracket(pattern, opening)
        parts.append(_expand_bounds(pattern, pattern[opening + 1 : closing]))
        position = closing + 1
    return parts


def _reject_stray_closing(pattern: str, literal: str) -> None:
    if "]" in literal:
        raise HostRangeError(pattern, "']' without a matching '['")


def _matching_bracket(pattern: str, opening: int) -> int:
    closing = pattern.find("]", opening + 1)
    if closing < 0:
        raise HostRangeError(pattern, "'[' is never closed")
    if "[" in pattern[opening + 1 : closing]:
        raise HostRangeError(pattern, "ranges cannot be nested")
    return closing


def _expand_bounds(pattern: str, inside: str) -> Sequence[str]:
    fields = inside.split(":")
    if len(fields) not in (2, 3):
        problem = f"'[{shorten(inside)}]' is not [start:end] or [start:end:step]"
        raise HostRangeError(pattern, problem)
    start, end = fields[0], fields[1]
    step = _parse_step(pattern, fields[2]) if len(fields) == 3 else 1
    if _DIGITS.match(start) and _DIGITS.match(end):
        return _number_range(pattern, start, end, step)
    if _is_letter(start) and _is_letter(end):
        return _letter_range(pattern, start, end, step)
    bounds = f"bounds '{shorten(start)}' and '{shorten(end)}'"
    raise HostRangeError(pattern, f"{bounds} must both be numbers or both single letters")


def _parse_step(pattern: str, text: str) -> int:
    if not _DIGITS.match(text) or int(_bounded(pattern, text)) == 0:
        raise HostRangeError(pattern, f"step '{shorten(text)}' is not a positive integer")
    return int(text)


def bounded_int(pattern: str, digits: str) -> int:
    """`digits` as a number, refused (as a bad range of `pattern`) past 18 digits."""
    return int(_bounded(pattern, digits))


def _bounded(pattern: str, digits: str) -> str:
    # Python refuses to read integers of more than 4300 digits, leading zeros included; far
    # fewer are ever meant. So the digits are counted as written, zeros and all.
    if len(digits) > _MAX_DIGITS:
        shown = digits if len(digits) <= 20 else f"{digits[:20]}..."
        raise HostRangeError(pattern, f"'{shown}' has more than {_MAX_DIGITS} digits")
    return digits


def _number_range(pattern: str, start: str, end: str, step: int) -> Sequence[str]:
    first, last = int(_bounded(pattern, start)), int(_bounded(pattern, end))
    if first > last:
        raise HostRangeError(pattern, f"start {start} is after end {end}")
    width = _padding_width(pattern, start, end)
    return _Numbers(range(first, last + 1, step), width)


def _padding_width(pattern: str, start: str, end: str) -> int:
    """Zero padding is kept as written: `[01:10]` gives 01..10, `[1:10]` gives 1..10."""
    padded = any(len(bound) > 1 and bound.startswith("0") for bound in (start, end))
    if not padded:
        return 0
    if len(start) != len(end):
        # `[01:100]` could mean width 2 or 3; refuse to guess.
        raise HostRangeError(pattern, f"zero-padded bounds {start} and {end} differ in width")
    return len(start)


def _is_letter(text: str) -> bool:
    return len(text) == 1 and text in string.ascii_letters


def _letter_range(pattern: str, start: str, end: str, step: int) -> list[str]:
    alphabet = string.ascii_lowercase if start.islower() else string.ascii_uppercase
    if end not in alphabet:
        raise HostRangeError(pattern, f"letters {start} and {end} differ in case")
    first, last = alphabet.index(start), alphabet.index(end)
    if first > last:
        raise HostRangeError(pattern, f"start {start} is after end {end}")
    return list(alphabet[first : last + 1 : step])
