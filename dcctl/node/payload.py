"""The contract between node and controller: one JSON payload between markers on stdout, and
the exit codes of the node runtime and of the scripts that start it.

Login banners, MOTDs and library noise may surround the payload; the controller takes the last
complete marker pair. The controller imports this module too, so it stays stdlib-only.
"""

from __future__ import annotations

import json
from typing import Any

PAYLOAD_START = "<dcctl-payload>"
PAYLOAD_END = "</dcctl-payload>"
PROGRESS_START = "<dcctl-progress>"
PROGRESS_END = "</dcctl-progress>"

# The oldest Python the node runtime runs on: every node file compiles and the facts task runs
# on it (tests/integration/test_node_messages.py proves it with a real one where it exists).
# 3.7 would still run today, but it is long out of support and node code may use 3.8 syntax.
MIN_PYTHON = (3, 8)

# Exit codes. The task itself: findings are in the payload, so a task that ran exits EXIT_OK.
EXIT_OK = 0
EXIT_BROKEN = 1  # the runtime itself broke; the payload says how
EXIT_BAD_REQUEST = 2  # unknown task or bad params
# The scripts around it (dcctl.fleet.runtime), each also printing a marker line on stdout so an
# interpreter that happens to exit with the same number is not taken for them.
EXIT_PYTHON_TOO_OLD = 96  # the interpreter is older than MIN_PYTHON
EXIT_RUNTIME_MISSING = 97  # no runtime with this hash in the node's cache: upload it
EXIT_NO_PYTHON = 98  # the `python` set for the host is not on the node

# Far deeper than any payload the runtime prints (facts nest five levels). Deeper JSON is
# refused at once: json.loads recurses per level and the run document nests it further.
MAX_PAYLOAD_DEPTH = 64


class BadPayload(ValueError):
    """A payload frame is there but cannot be used: not JSON, not an object, nested too deep."""


class PayloadCutOff(BadPayload):
    """The frame's end is there but not its start: only the output's tail was kept."""


def _dumps(obj: Any) -> str:
    # "<" only ever occurs inside JSON strings, so escaping it keeps a marker that happens
    # to be inside a value (a traceback, a mount point) from ending the frame early.
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).replace("<", "\\u003c")


def format_payload(obj: Any) -> str:
    """One line: the markers around the JSON, ending in a newline."""
    return f"{PAYLOAD_START}{_dumps(obj)}{PAYLOAD_END}\n"


def format_progress(obj: Any) -> str:
    """One progress line, shown live by the controller; printed before the payload."""
    return f"{PROGRESS_START}{_dumps(obj)}{PROGRESS_END}\n"


def _nested_within(obj: Any, depth: int) -> bool:
    """Whether obj nests at most `depth` containers deep; one pass per level, linear in all."""
    level = [obj]
    for _ in range(depth):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return True
    return False


def _decode(text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except RecursionError:
        raise BadPayload(f"JSON nested deeper than {MAX_PAYLOAD_DEPTH} levels") from None
    except ValueError as exc:
        raise BadPayload(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BadPayload(f"a JSON {type(obj).__name__}, not an object")
    if not _nested_within(obj, MAX_PAYLOAD_DEPTH):
        raise BadPayload(f"JSON nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    return obj


def _last_frame(text: str, start: str, end: str) -> dict[str, Any] | None:
    end_at = text.rfind(end)
    if end_at < 0:
        return None
    start_at = text.rfind(start, 0, end_at)
    if start_at < 0:
        raise PayloadCutOff("its start marker is not in the output kept")
    return _decode(text[start_at + len(start) : end_at])


def read_payload(stdout: str) -> dict[str, Any] | None:
    """The object in the last payload frame; None when there is no frame at all.

    Raises BadPayload when a frame is there but unusable, PayloadCutOff when only its end is.
    """
    return _last_frame(stdout, PAYLOAD_START, PAYLOAD_END)


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """The object in a progress line, or None when the line is not one."""
    try:
        return _last_frame(line, PROGRESS_START, PROGRESS_END)
    except BadPayload:
        return None
