"""The `python` step: what makes the venv is new enough for torch 2.x, or a venv is already
there and works, so nothing needs making.

The maker is the host's `provision_python` when the inventory names one, else the interpreter
running this task (the host's `python`). Asking for another one does not change what bench
and certify run: that stays the venv's python, or the host's `python` when set.
"""

from __future__ import annotations

import sys
from typing import Any, NamedTuple

from dcctl.node.provision.commands import run_command
from dcctl.node.provision.result import step

# torch 2.2 and later need Python 3.8+, but 3.8's support ended and newer torch needs 3.9+.
MIN_VENV_PYTHON = (3, 9)
PROBE_TIMEOUT_S = 60.0
# Runs in the maker: its version and where it is (a bare `python3.11` resolved to a path).
_VERSION_PY = "import sys; print('%d.%d.%d' % tuple(sys.version_info[:3])); print(sys.executable)"


class Maker(NamedTuple):
    """The interpreter that makes the venv."""

    executable: str
    version: tuple[int, ...] | None  # None: it did not run (`error` says why)
    error: str | None = None
    commands: tuple[tuple[str, ...], ...] = ()  # what asking it ran

    @property
    def ok(self) -> bool:
        return self.version is not None and self.version[:2] >= MIN_VENV_PYTHON


def find_maker(python: str | None) -> Maker:
    """`python` asked for its version; None: the interpreter running this task, unasked."""
    if python is None:
        return Maker(sys.executable, tuple(sys.version_info[:3]))
    argv = [python, "-I", "-c", _VERSION_PY]
    commands = (tuple(argv),)
    outcome = run_command(argv, PROBE_TIMEOUT_S)
    lines = outcome.stdout.splitlines()
    if not outcome.ok or len(lines) < 2:
        why = outcome.why() if not outcome.ok else "it printed no version"
        return Maker(python, None, f"provision_python {python} does not run: {why}", commands)
    try:
        version = tuple(int(part) for part in lines[0].split("."))
    except ValueError:
        return Maker(python, None, f"provision_python {python} printed no version", commands)
    return Maker(lines[1].strip() or python, version, None, commands)


def python_step(maker: Maker | None, working_venv: str | None = None) -> dict[str, Any]:
    """ok when `working_venv` (a line on the venv's python) says there is nothing to make;
    else what `maker` is (it is asked only then)."""
    if working_venv is not None or maker is None:
        return step("python", "ok", f"the venv is there and its python runs: {working_venv}")
    commands = [list(argv) for argv in maker.commands]
    if maker.version is None:
        return step("python", "failed", maker.error or f"{maker.executable} does not run", commands)
    text = ".".join(str(part) for part in maker.version)
    need = ".".join(str(part) for part in MIN_VENV_PYTHON)
    if maker.ok:
        return step("python", "ok", f"python {text} at {maker.executable}", commands)
    return step(
        "python",
        "failed",
        f"python {text} at {maker.executable}: provision needs >= {need} to make the venv; "
        f"set `provision_python` for the host to a Python >= {need} on it",
        commands,
    )
