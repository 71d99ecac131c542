"""Drain failing nodes in Slurm and resume them once they pass again, through `scontrol`.

dcctl only ever touches what it owns: it drains with a reason it writes (`dcctl: ...`), and
resumes only nodes whose reason starts with that prefix. A node carrying anyone else's reason
(an operator's "bad fan", Slurm's own "Not responding") is left alone, drained or not, so a
person's note is never overwritten or cleared. A node already drained by dcctl that fails
again gets its reason rewritten when the finding changed, so `sinfo -R` shows the current
problem; an unchanged reason is left as it is (no update, no new timestamp).

`plan` is pure; `read_nodes` and `apply` run scontrol with argv lists, never a shell.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from dcctl.audit.slurm_parse import REASON_PREFIX, SlurmNode, is_dcctl_reason, parse_nodes
from dcctl.errors import DcctlError

__all__ = [
    "REASON_PREFIX",
    "Decision",
    "DrainAction",
    "Outcome",
    "SlurmError",
    "SlurmNode",
    "apply",
    "parse_nodes",
    "plan",
    "read_nodes",
    "reason_for",
]

# Slurm keeps a reason of any length, but `sinfo -R` and `scontrol show node` print it whole on
# one line: a short reason stays readable there and in slurmctld's state files.
MAX_REASON_CHARS = 200
SCONTROL_TIMEOUT_S = 30.0
_ELLIPSIS = "..."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A node name scontrol would read as a host list or as several words is refused, so one
# update can never reach more nodes than the one named.
_SAFE_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


class SlurmError(DcctlError):
    """scontrol is missing, failed or timed out: one line saying which and why."""


@dataclass(frozen=True)
class DrainAction:
    kind: Literal["drain", "resume"]
    node: str
    reason: str | None

    def argv(self, scontrol: str) -> list[str]:
        if self.kind == "resume":
            return [scontrol, "update", f"NodeName={self.node}", "State=RESUME"]
        return [scontrol, "update", f"NodeName={self.node}", "State=DRAIN", f"Reason={self.reason}"]

    def describe(self) -> str:
        if self.kind == "resume":
            return f"resume {self.node}"
        return f"drain {self.node} (reason {self.reason!r})"


@dataclass(frozen=True)
class Decision:
    node: str
    action: DrainAction | None
    # Why, for a person: "drained by someone else (reason 'bad fan'): left alone".
    note: str


@dataclass(frozen=True)
class Outcome:
    node: str
    action: DrainAction
    # "done": scontrol accepted it; "dry-run": not run; "failed": see message.
    status: Literal["done", "dry-run", "failed"]
    message: str

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def reason_for(finding: str) -> str:
    """`dcctl: <finding>` on one line, short enough to read in `sinfo -R`. Trailing quotes
    go: scontrol strips a closing quote from a reason, which would make it differ from ours."""
    text = " ".join(_CONTROL.sub(" ", finding).split()).rstrip("\"'") or "failed check"
    reason = f"{REASON_PREFIX} {text}"
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return reason[: MAX_REASON_CHARS - len(_ELLIPSIS)].rstrip() + _ELLIPSIS


def same_finding(old: str, new: str) -> bool:
    """Whether two dcctl reasons name the same failed check (`dcctl: <check>: <message>`):
    the message may carry a figure measured afresh each audit, and a node must not be drained
    again, its reason's time stamp reset, for the failure it is already drained for."""

    def check(reason: str) -> str:
        head, sep, _ = reason[len(REASON_PREFIX) :].strip().partition(": ")
        return head if sep else reason

    return check(old) == check(new)


def read_node(name: str, scontrol: str = "scontrol") -> SlurmNode | None:
    """One node as Slurm has it now, or None if Slurm does not know it."""
    output = _run([scontrol, "show", "node", "-o", name], what=f"scontrol show node {name}")
    return parse_nodes(output).get(name)


def plan(
    failing: Mapping[str, str], passing: Collection[str], nodes: Mapping[str, SlurmNode]
) -> list[Decision]:
    """One decision per node named: failing (node -> finding) first, then passing nodes
    that are not also failing. Only nodes Slurm knows can get an action."""
    decisions = [_plan_failing(name, finding, nodes.get(name)) for name, finding in failing.items()]
    decisions += [_plan_passing(name, nodes.get(name)) for name in passing if name not in failing]
    return decisions


def _someone_elses(node: SlurmNode) -> str | None:
    """The note for a node carrying a reason dcctl did not write, else None."""
    if node.reason is None:
        return "drained without a reason: left alone" if node.drained else None
    if is_dcctl_reason(node.reason):
        return None
    if node.drained:
        return f"drained by someone else (reason {node.reason!r}): left alone"
    state = node.state or "state unknown"
    return f"{state} with reason {node.reason!r} set by someone else: left alone"


def _plan_failing(name: str, finding: str, node: SlurmNode | None) -> Decision:
    if node is None:
        return Decision(name, None, "not a Slurm node: nothing to drain")
    foreign = _someone_elses(node)
    if foreign is not None:
        return Decision(name, None, foreign)
    reason = reason_for(finding)
    if node.drained and node.reason is not None and same_finding(node.reason, reason):
        return Decision(name, None, "already drained by dcctl for this finding")
    note = "new finding: update the reason" if node.drained else "fails: drain"
    return Decision(name, DrainAction("drain", name, reason), note)


def _plan_passing(name: str, node: SlurmNode | None) -> Decision:
    if node is None:
        return Decision(name, None, "not a Slurm node: nothing to resume")
    if not node.drained:
        return Decision(name, None, "not drained: nothing to do")
    foreign = _someone_elses(node)
    if foreign is not None:
        return Decision(name, None, foreign)
    return Decision(name, DrainAction("resume", name, None), "passes again: resume")


def read_nodes(names: Sequence[str], scontrol: str = "scontrol") -> dict[str, SlurmNode]:
    """The Slurm nodes among `names` (names Slurm does not know are left out). Reads every
    node in one call: scontrol answers a list holding an unknown name with an error line, or
    exit status 1 when that name is the only one."""
    output = _run([scontrol, "show", "node", "-o"], what="scontrol show node")
    nodes = parse_nodes(output)
    return {name: nodes[name] for name in names if name in nodes}


def apply(
    decisions: Sequence[Decision], scontrol: str = "scontrol", dry_run: bool = False
) -> list[Outcome]:
    """Carry out each decision that has an action; a failure is an outcome, not an exception."""
    return [_apply_one(d.action, scontrol, dry_run) for d in decisions if d.action is not None]


def _apply_one(action: DrainAction, scontrol: str, dry_run: bool) -> Outcome:
    if not _SAFE_NODE_NAME.fullmatch(action.node):
        return Outcome(action.node, action, "failed", f"refusing node name {action.node!r}")
    if dry_run:
        return Outcome(action.node, action, "dry-run", f"would {action.describe()}")
    try:
        _run(action.argv(scontrol), what=f"scontrol update NodeName={action.node}")
    except SlurmError as exc:
        return Outcome(action.node, action, "failed", str(exc))
    past = "drained" if action.kind == "drain" else "resumed"
    return Outcome(action.node, action, "done", f"{past} {action.node}")


def _run(argv: list[str], what: str) -> str:
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=SCONTROL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise SlurmError(f"{argv[0]} not found: install slurm-client or give its path") from None
    except PermissionError:
        raise SlurmError(f"{argv[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"{what} gave no answer in {SCONTROL_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        raise SlurmError(f"{what} failed (exit {proc.returncode}): {_first_line(proc)}")
    return proc.stdout


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    for line in (proc.stderr or proc.stdout or "").splitlines():
        if line.strip():
            return line.strip()
    return "no message"
