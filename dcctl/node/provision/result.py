"""One entry of payload["steps"]: what a step found, did or would do."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STATUSES = ("ok", "changed", "failed", "skipped")


def step(
    name: str, status: str, message: str, commands: Sequence[Sequence[str]] = ()
) -> dict[str, Any]:
    """{"name", "status", "message", "commands"}; the message is kept to one line."""
    if status not in STATUSES:
        raise ValueError(f"unknown step status {status!r}")
    line = " ".join(message.split())
    return {
        "name": name,
        "status": status,
        "message": line,
        "commands": [list(argv) for argv in commands],
    }
