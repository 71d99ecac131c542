"""Version requirements (">=5.15", "==550.54.15", "550.54", ">=5.15,<7") and numeric comparison.

Versions compare as tuples of integers taken from their numeric prefix, so the kernel
"6.1.0-18-amd64" compares as 6.1.0, and missing parts count as zero (12.4 == 12.4.0).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

_PREFIX_RE = re.compile(r"\d+(?:\.\d+)*")
_CLAUSE_RE = re.compile(r"(>=|<=|==|!=|>|<)?\s*(\d+(?:\.\d+)*)(\.\*)?")

_OPERATORS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def parse_version(text: str) -> tuple[int, ...]:
    """The numeric prefix of a version string as integers; ValueError when there is none."""
    match = _PREFIX_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a version: {text!r}")
    return tuple(int(part) for part in match.group(0).split("."))


def _pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version a is below, equal to or above version b."""
    left, right = _pad(parse_version(a), parse_version(b))
    return (left > right) - (left < right)


@dataclass(frozen=True)
class Clause:
    """One comparison. `prefix` is set for "==550.*" / "!=550.*": compare leading parts only."""

    op: str
    version: tuple[int, ...]
    prefix: bool = False

    def matches(self, version: tuple[int, ...]) -> bool:
        if self.prefix:
            equal = version[: len(self.version)] == self.version
            return equal if self.op == "==" else not equal
        left, right = _pad(version, self.version)
        return _OPERATORS[self.op](left, right)


@dataclass(frozen=True)
class Requirement:
    """Clauses that must all hold, and the text they came from (for messages)."""

    text: str
    clauses: tuple[Clause, ...]

    def satisfied_by(self, version: str) -> bool:
        """Whether `version` meets every clause; ValueError when it has no numeric prefix."""
        parsed = parse_version(version)
        return all(clause.matches(parsed) for clause in self.clauses)

    def __str__(self) -> str:
        return self.text


def _parse_clause(text: str, whole: str) -> Clause:
    match = _CLAUSE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid version requirement {whole!r}: expected an operator "
            "(>=, >, <=, <, ==, !=) or none, then a dotted version, e.g. '>=5.15'"
        )
    op, version, wildcard = match.group(1) or "==", match.group(2), match.group(3)
    if wildcard and op not in ("==", "!="):
        raise ValueError(f"invalid version requirement {whole!r}: '.*' works only with == or !=")
    return Clause(op, tuple(int(part) for part in version.split(".")), prefix=bool(wildcard))


def parse_requirement(spec: str | int | float) -> Requirement:
    """ ">=5.15", "550.54" (means ==), ">=5.15,<7", "==550.*"; ValueError when invalid.

    YAML turns `driver: 550` and `cuda: 12.4` into numbers, so numbers are accepted as ==.
    """
    if isinstance(spec, bool) or not isinstance(spec, (str, int, float)):
        raise ValueError(f"invalid version requirement {spec!r}: expected a string like '>=5.15'")
    text = str(spec).strip()
    parts = text.split(",")
    if not text or any(not part.strip() for part in parts):
        raise ValueError(f"invalid version requirement {text!r}: empty clause")
    return Requirement(text, tuple(_parse_clause(part, text) for part in parts))


def satisfies(version: str, spec: str | int | float) -> bool:
    """Shorthand: whether `version` meets the requirement `spec`."""
    return parse_requirement(spec).satisfied_by(version)
