"""The `python` step: the interpreter that makes the venv is new enough for torch 2.x."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from dcctl.node.provision.result import step

# torch 2.2 and later need Python 3.8+, but 3.8's support ended and newer torch needs 3.9+.
MIN_VENV_PYTHON = (3, 9)


def python_step(
    version: Sequence[int] | None = None, executable: str | None = None
) -> dict[str, Any]:
    found = tuple(sys.version_info[:3] if version is None else version)
    where = sys.executable if executable is None else executable
    text = ".".join(str(part) for part in found)
    need = ".".join(str(part) for part in MIN_VENV_PYTHON)
    if found[:2] >= MIN_VENV_PYTHON:
        return step("python", "ok", f"python {text} at {where}")
    return step(
        "python",
        "failed",
        f"python {text} at {where}: provision needs >= {need}; set `python` for the host",
    )
