"""A host's `provision` payload (dcctl/node/provision) read into what the controller shows,
records and exits on: the steps as the node ran them, and one status for the host.

The node's output is read defensively, as every payload is: a step that is not of the shape
the node task promises makes the host an error naming what was wrong, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dcctl.fleet.outcome import HostOutcome
from dcctl.fleet.runtime import shorten
from dcctl.results.document import EXIT_FAILED, EXIT_HOST_ERROR, EXIT_NOT_SAVED, EXIT_OK

StepStatus = Literal["ok", "changed", "failed", "skipped"]
HostStatus = Literal["ok", "changed", "failed", "error"]
STEP_STATUSES: tuple[StepStatus, ...] = ("ok", "changed", "failed", "skipped")
# The steps whose success means the venv can run benchmarks: only then is it recorded.
VENV_STEPS = ("venv", "packages")
_USABLE = ("ok", "changed")
# What the controller keeps of a node's step list; the node runs eight steps.
MAX_STEPS = 32
MAX_COMMANDS = 16
MAX_ARGV = 64
MESSAGE_CHARS = 300


class BadProvisionPayload(ValueError):
    """The payload is not what the provision task prints."""


@dataclass(frozen=True)
class StepOutcome:
    name: str
    status: StepStatus
    message: str
    commands: tuple[tuple[str, ...], ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "commands": [list(argv) for argv in self.commands],
        }


@dataclass(frozen=True)
class HostProvision:
    """One host's provisioning: the steps, or the error that kept it from running them."""

    name: str
    address: str
    status: HostStatus
    error: Mapping[str, str] | None
    steps: tuple[StepOutcome, ...]
    venv_python: str | None
    facts: Mapping[str, Any]
    duration_s: float

    @property
    def venv_usable(self) -> bool:
        """The venv and its packages are in place: bench and certify may run on it."""
        found = {step.name: step.status for step in self.steps}
        in_place = all(found.get(name) in _USABLE for name in VENV_STEPS)
        return self.error is None and in_place and self.venv_python is not None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "status": self.status,
            "error": dict(self.error) if self.error is not None else None,
            "duration_s": round(self.duration_s, 3),
            "steps": [step.as_json() for step in self.steps],
            "venv_python": self.venv_python,
            **self.facts,
        }


# Facts the node reports beside the steps, each a string or null.
_FACTS = ("cuda_driver", "torch_build", "package_manager")


def host_provision(outcome: HostOutcome) -> HostProvision:
    host = outcome.host
    error = outcome.error
    if error is None:
        try:
            steps, venv_python, facts = _read(outcome.payload or {})
        except BadProvisionPayload as exc:
            message = f"unreadable provision result: {exc}"
            return _errored(outcome, {"kind": "runtime", "message": message})
        status = _host_status(step.status for step in steps)
        return HostProvision(host.name, host.address, status, None, steps, venv_python, facts,
                             outcome.duration_s)  # fmt: skip
    return _errored(outcome, {"kind": error.kind, "message": error.message})


def _errored(outcome: HostOutcome, error: Mapping[str, str]) -> HostProvision:
    host = outcome.host
    return HostProvision(host.name, host.address, "error", error, (), None, {},
                         outcome.duration_s)  # fmt: skip


def _host_status(statuses: Iterable[StepStatus]) -> HostStatus:
    seen = set(statuses)
    if "failed" in seen:
        return "failed"
    return "changed" if "changed" in seen else "ok"


def _read(payload: Mapping[str, Any]) -> tuple[tuple[StepOutcome, ...], str | None, dict[str, Any]]:
    raw_steps = payload.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise BadProvisionPayload("no list of steps")
    if len(raw_steps) > MAX_STEPS:
        raise BadProvisionPayload(f"{len(raw_steps)} steps, more than {MAX_STEPS}")
    steps = tuple(_step(raw) for raw in raw_steps)
    venv_python = _venv_python(payload.get("venv_python"))
    facts = {name: _optional_text(payload, name) for name in _FACTS}
    return steps, venv_python, facts


def _step(raw: Any) -> StepOutcome:
    if not isinstance(raw, dict):
        raise BadProvisionPayload("a step is not an object")
    name, status, message = raw.get("name"), raw.get("status"), raw.get("message")
    if not isinstance(name, str) or not name.isidentifier() or len(name) > 40:
        raise BadProvisionPayload("a step has no name")
    if status not in STEP_STATUSES:
        raise BadProvisionPayload(f"step {name!r} has status {_line(str(status), 40)!r}")
    if not isinstance(message, str):
        raise BadProvisionPayload(f"step {name!r} has no message")
    return StepOutcome(name, status, _line(message, MESSAGE_CHARS), _commands(raw.get("commands")))


def _line(text: str, limit: int = 160) -> str:
    """Node text as one printable line: it reaches a terminal, so no escape sequences."""
    return shorten("".join(char if char.isprintable() else " " for char in text), limit)


def _commands(raw: Any) -> tuple[tuple[str, ...], ...]:
    """The argv lists a step ran, as far as they are argv lists; kept short."""
    if not isinstance(raw, list):
        return ()
    kept = []
    for argv in raw[:MAX_COMMANDS]:
        if isinstance(argv, list) and all(isinstance(word, str) for word in argv):
            kept.append(tuple(_line(word) for word in argv[:MAX_ARGV]))
    return tuple(kept)


def _venv_python(value: Any) -> str | None:
    """Kept whole, not shortened: it is recorded and run later."""
    if value is None:
        return None
    usable = isinstance(value, str) and value.startswith("/") and len(value) <= 4096
    if not usable or not value.isprintable():
        raise BadProvisionPayload("venv_python is not an absolute path")
    return str(value)


def _optional_text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadProvisionPayload(f"{key} is not a string")
    return _line(value)


@dataclass(frozen=True)
class Tally:
    hosts: int
    ok: int
    changed: int
    failed: int
    error: int

    def as_json(self) -> dict[str, int]:
        return {"hosts": self.hosts, "ok": self.ok, "changed": self.changed,
                "failed": self.failed, "error": self.error}  # fmt: skip


def tally(hosts: Sequence[HostProvision]) -> Tally:
    count = {status: 0 for status in ("ok", "changed", "failed", "error")}
    for host in hosts:
        count[host.status] += 1
    return Tally(len(hosts), count["ok"], count["changed"], count["failed"], count["error"])


def provision_exit_code(counts: Tally, saved: bool) -> int:
    """1 a step failed somewhere; else 3 a host could not be provisioned at all; else 4 the
    state dir did not take a record; else 0. (A stop signal's code is the caller's.)"""
    if counts.failed:
        return EXIT_FAILED
    if counts.error:
        return EXIT_HOST_ERROR
    return EXIT_OK if saved else EXIT_NOT_SAVED
