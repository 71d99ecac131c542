"""An audit's verdicts applied to Slurm: inventory hosts matched to Slurm node names, failing
ones drained, passing ones resumed, under the rules of dcctl.audit.slurm (a node drained by
anyone else is never touched)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from dcctl.audit.slurm import Decision, Outcome, SlurmError, apply, plan, read_node, read_nodes


def _candidates(host: str) -> list[str]:
    """Slurm knows a node by its short name where an inventory may use the FQDN."""
    short = host.split(".", 1)[0]
    return [host] if short == host or short.isdigit() else [host, short]


def _slurm_names(hosts: Sequence[str], known: Mapping[str, object]) -> dict[str, str]:
    """Inventory host -> the Slurm node it is, for the hosts Slurm knows."""
    matched: dict[str, str] = {}
    for host in hosts:
        for name in _candidates(host):
            if name in known:
                matched[host] = name
                break
    return matched


def _still_so(decision: Decision, finding: str | None, scontrol: str) -> Decision:
    """The decision made again on the node as it is now: between reading every node and
    updating this one, a person may have drained it, or set a reason of their own."""
    try:
        node = read_node(decision.node, scontrol)
    except SlurmError as exc:
        return Decision(decision.node, None, f"could not be read again: {exc}")
    nodes = {decision.node: node} if node is not None else {}
    failing = {decision.node: finding} if finding is not None else {}
    passing = [] if finding is not None else [decision.node]
    (again,) = plan(failing, passing, nodes)
    return again


def sync_slurm(
    failing: Mapping[str, str],
    passing: Sequence[str],
    dry_run: bool,
    scontrol: str = "scontrol",
    should_stop: Callable[[], bool] = lambda: False,
) -> tuple[list[str], list[str]]:
    """Drain `failing` (host -> finding) and resume `passing`; returns the lines to print
    (what was done, or with `dry_run` what would be) and the problems (one line each). A stop
    signal (`should_stop`) ends it between two nodes."""
    hosts = [*failing, *passing]
    if not hosts:
        return [], []
    try:
        nodes = read_nodes([name for host in hosts for name in _candidates(host)], scontrol)
    except SlurmError as exc:
        return [], [f"slurm: {exc}; no node drained or resumed"]
    names = _slurm_names(hosts, nodes)
    findings = {names[host]: finding for host, finding in failing.items() if host in names}
    decisions = plan(findings, [names[host] for host in passing if host in names], nodes)
    lines: list[str] = []
    if dry_run:
        lines += [f"slurm: {d.node}: {d.note}" for d in decisions if d.action is None
                  and d.note and not d.note.startswith("not drained")]  # fmt: skip
    problems: list[str] = []
    outcomes: list[Outcome] = []
    for decision in decisions:
        if decision.action is None:
            continue
        if should_stop():
            problems.append("slurm: stopped before every node was drained or resumed")
            break
        if not dry_run:
            decision = _still_so(decision, findings.get(decision.node), scontrol)
        outcomes += apply([decision], scontrol, dry_run)
    for outcome in outcomes:
        if outcome.ok:
            done_drain = outcome.status == "done" and outcome.action.reason
            reason = f": {outcome.action.reason}" if done_drain else ""
            lines.append(f"slurm: {outcome.message}{reason}")
        else:
            problems.append(f"slurm: {outcome.node}: {outcome.message}")
    return lines, problems
