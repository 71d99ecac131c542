"""The `venv` step: a venv at the host's runtime_venv whose Python runs and has pip.

A venv is a directory with `pyvenv.cfg`: nothing else is ever taken for one, so a
runtime_venv of /usr (whose bin/python runs pip too) is refused, never installed into. An
existing venv is never replaced or repaired: it may be someone's, and a broken one is reported
with what to do, so the operator decides what goes. An empty directory may become the venv.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from dcctl.node.provision.commands import Outcome, run_command
from dcctl.node.provision.params import Params
from dcctl.node.provision.paths import can_create
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.python import Maker
from dcctl.node.provision.result import step

CREATE_TIMEOUT_S = 300.0
PROBE_TIMEOUT_S = 60.0
_PIP_VERSION_RE = re.compile(r"^pip (\d+)\.(\d+)", re.MULTILINE)
_PYTHON_VERSION_RE = re.compile(r"\(python (\d+\.\d+)\)")
MARKER = "pyvenv.cfg"


class VenvState(NamedTuple):
    """What the packages step needs to know about the venv."""

    python: str  # <venv>/bin/python
    usable: bool  # it runs and has pip (after this run; not in a check that would create it)
    would_create: bool  # check mode, no venv yet: the packages step can only say what it would do
    as_root: bool  # writing into the venv needs root


class Found(NamedTuple):
    """What is at runtime_venv before anything is done."""

    kind: str  # "venv" (has pyvenv.cfg), "absent", "empty" (a directory), "other"
    probe: Outcome | None = None  # "venv": `<venv>/bin/python -m pip --version`

    @property
    def works(self) -> bool:
        return self.kind == "venv" and self.probe is not None and self.probe.ok

    def describe(self) -> str:
        return _describe(self.probe) if self.probe is not None else ""


def venv_python(venv: str) -> str:
    return os.path.join(venv, "bin", "python")


def parse_pip_version(text: str) -> tuple[int, int] | None:
    """(23, 2) from `pip --version`'s "pip 23.2.1 from ... (python 3.11)"."""
    match = _PIP_VERSION_RE.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _probe(python: str) -> Outcome:
    return run_command([python, "-m", "pip", "--version"], PROBE_TIMEOUT_S)


def inspect_venv(venv: str) -> Found:
    """A venv (probed), nothing, an empty directory, or something that is no venv."""
    if os.path.isfile(os.path.join(venv, MARKER)):
        return Found("venv", _probe(venv_python(venv)))
    if not os.path.lexists(venv):
        return Found("absent")
    try:
        empty = os.path.isdir(venv) and not os.listdir(venv)
    except OSError:
        empty = False
    return Found("empty" if empty else "other")


def _describe(probe: Outcome) -> str:
    found = _PYTHON_VERSION_RE.search(probe.stdout)
    pip = parse_pip_version(probe.stdout)
    python = f"Python {found.group(1)}" if found else "Python"
    described = f"{python}, pip {pip[0]}.{pip[1]}" if pip else python
    return f"{described} at {probe.argv[0]}"


def _broken(venv: str, probe: Outcome) -> str:
    why = probe.why()
    if "No module named pip" in why:
        return (
            f"venv at {venv} has no pip ({why}): remove it, make sure the python3-venv package "
            "is installed, and provision again"
        )
    return f"venv at {venv} exists but its Python does not run ({why}): remove it or fix it"


def _create_failed(maker: str, outcome: Outcome) -> str:
    text = outcome.stdout + outcome.stderr
    if "ensurepip is not available" in text:
        # Debian and Ubuntu split venv's ensurepip into a package of its own.
        return (
            f"{maker} -m venv failed: ensurepip is not available; install the "
            "python3-venv package for this Python (or set `provision_python` for the host)"
        )
    return f"creating the venv failed: {outcome.why()}"


def venv_step(
    params: Params, privilege: Privilege, found: Found, maker: Maker | None
) -> tuple[dict[str, Any], VenvState]:
    python = venv_python(params.venv)
    # Its own directory when it is there (pip writes into it), else where it would be made.
    as_root = not can_create(params.venv)
    state = VenvState(python, usable=False, would_create=False, as_root=as_root)
    if found.kind == "venv":
        probe = found.probe
        assert probe is not None  # a venv is always probed
        if not probe.ok:
            return step("venv", "failed", _broken(params.venv, probe), [probe.argv]), state
        entry = step("venv", "ok", f"venv at {params.venv}: {found.describe()}", [probe.argv])
        return entry, state._replace(usable=True)
    if found.kind == "other":
        message = (
            f"{params.venv} exists and is not a venv (no {MARKER}): choose another runtime_venv"
        )
        return step("venv", "failed", message), state
    if maker is None or not maker.ok:
        return step("venv", "skipped", "making it needs Python >= 3.9 (see python)"), state
    argv = [maker.executable, "-m", "venv", params.venv]
    if as_root:
        if not privilege.usable:
            return privilege.refused("venv", f"creating {params.venv}", [argv]), state
        argv = privilege.argv(argv)
    if params.check:
        message = f"would create a venv at {params.venv} with {maker.executable}"
        return step("venv", "changed", message, [argv]), state._replace(would_create=True)
    outcome = run_command(argv, CREATE_TIMEOUT_S)
    if not outcome.ok:
        return step("venv", "failed", _create_failed(maker.executable, outcome), [argv]), state
    probe = _probe(python)
    if not probe.ok:
        return step("venv", "failed", _broken(params.venv, probe), [argv, probe.argv]), state
    message = f"created a venv at {params.venv} with {maker.executable}: {_describe(probe)}"
    entry = step("venv", "changed", message, [argv, probe.argv])
    return entry, state._replace(usable=True)
