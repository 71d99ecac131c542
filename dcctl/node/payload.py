"""The framing between node and controller: one JSON payload between markers on stdout.

Login banners, MOTDs and library noise may surround it; the controller takes the last
complete marker pair. The controller imports this module too, so it stays stdlib-only.
"""

from __future__ import annotations

import json
from typing import Any

PAYLOAD_START = "<dcctl-payload>"
PAYLOAD_END = "</dcctl-payload>"
PROGRESS_START = "<dcctl-progress>"
PROGRESS_END = "</dcctl-progress>"


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


def _last_frame(text: str, start: str, end: str) -> dict[str, Any] | None:
    end_at = text.rfind(end)
    if end_at < 0:
        return None
    start_at = text.rfind(start, 0, end_at)
    if start_at < 0:
        return None
    try:
        obj = json.loads(text[start_at + len(start) : end_at])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def extract_payload(stdout: str) -> dict[str, Any] | None:
    """The object in the last complete payload frame, or None when there is none or it is bad."""
    return _last_frame(stdout, PAYLOAD_START, PAYLOAD_END)


def parse_progress_line(line: str) -> dict[str, Any] | None:
    """The object in a progress line, or None when the line is not one."""
    return _last_frame(line, PROGRESS_START, PROGRESS_END)
