"""A playbook: ordered steps (check, bench, certify), each with its options, thresholds, a
time limit and what to do when it fails. `dcctl check`, `bench` and `certify` are one-step
playbooks built in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

StepKind = Literal["check", "bench", "certify"]
OnFail = Literal["continue", "stop"]
STEP_KINDS: tuple[StepKind, ...] = ("check", "bench", "certify")


@dataclass(frozen=True)
class PlaybookStep:
    """One step. `options` are the command's own options by their long name with `_` for
    `-` (`dcgm`, `benchmark`, `quick`, `dtype`, `scope`, `steps`, ...), already validated
    and typed; `expect` overrides the inventory's `expect` for this step only; `timeout_s`
    None keeps the command's default; `line` is where the step starts in its file (0 for a
    step built in memory)."""

    name: str
    kind: StepKind
    options: dict[str, Any] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
    on_fail: OnFail = "stop"
    line: int = 0


@dataclass(frozen=True)
class Playbook:
    name: str
    # The file it was read from, or "<command>" for a one-step run built in memory.
    source: str
    steps: tuple[PlaybookStep, ...]
    description: str = ""
    # The file's text as read, which a run keeps as what it used (None: built in memory).
    text: str | None = field(default=None, repr=False, compare=False)

    @property
    def from_file(self) -> bool:
        return not self.source.startswith("<")


def one_step(kind: StepKind, options: dict[str, Any], timeout_s: float | None) -> Playbook:
    """The playbook `dcctl check|bench|certify` runs: its one step, named after the command."""
    step = PlaybookStep(name=kind, kind=kind, options=options, timeout_s=timeout_s)
    return Playbook(name=kind, source=f"<{kind}>", steps=(step,))
