"""What every report reads the same way out of a run document: the order statuses are shown
in (worst first), and guards for sections that may be absent or of the wrong type (a report of
a half-written or hand-edited run must still render)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A result's status, worst first.
STATUS_ORDER = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}
# A host's status, worst first.
HOST_ORDER = {"failed": 0, "error": 1, "passed": 2}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def hosts_label(hosts: Any, named: int = 4, none: str = "") -> str:
    """The hosts a cluster result spans: up to `named` names, else the first, the last and the
    count (a 64-node job's name is not a list of 64)."""
    names = [str(host) for host in as_list(hosts)]
    if not names:
        return none
    if len(names) <= named:
        return ", ".join(names)
    return f"{names[0]} … {names[-1]} ({len(names):,} hosts)"


def gpu_index(result: Mapping[str, Any]) -> int | None:
    """The index of the GPU a result names, if it names one."""
    gpu = result.get("gpu")
    index = gpu.get("index") if isinstance(gpu, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def escaped_char(match: re.Match[str]) -> str:
    """A character no report may hold raw (a control character, a lone surrogate) as the
    `\\x1b` / `\\ud800` escape a reader can still see."""
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
