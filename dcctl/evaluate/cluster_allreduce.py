"""Judges allreduce across a group's nodes: one sweep over the whole group, and node pairs.

`cluster.allreduce`: one gang job over every node of the group, summarized as the node-scope
sweep is (dcctl.node.bench.allreduce.summarize_allreduce) and judged alike: wrong elements
fail, a failed rank or node is an error, busbw below `allreduce_cluster_min_busbw_gbs` fails,
and with no threshold the figure is reported.

Pairs find the node behind a slow group. Pass 1 runs consecutive pairs (a-b, c-d, ...); every
node of a pair below the threshold, and the odd node out, then runs with nodes of passing pairs
(pass 2). A node below the threshold with two different partners is the slow one; a pair below
whose nodes both pass with other partners is a slow path between them (a cable, a switch
port), not a slow node. The threshold is `allreduce_pair_min_busbw_gbs`, else 0.8 x the
median of the first pass: a healthy fabric's pairs measure within a few percent of each
other, and one slow node leaves the median where the healthy pairs are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import cycle, islice
from typing import Any

from dcctl.evaluate.bench_allreduce import evaluate_allreduce, size_text
from dcctl.evaluate.bounds import listed, shown
from dcctl.evaluate.cluster_stats import finite, median, node_problems, strictest
from dcctl.evaluate.gang_input import ClusterJudgement, GangRun, NodeRun, cluster_result
from dcctl.evaluate.result import Result, Status
from dcctl.inventory.expect_keys import Expectations, expectations
from dcctl.inventory.model import Host
from dcctl.node.bench.allreduce import AllreduceSection, summarize_allreduce

CLUSTER_ID = "cluster.allreduce"
HOST_CLUSTER_ID = "allreduce.cluster"
PAIR_ID = "cluster.allreduce.pair"
PAIRS_ID = "cluster.allreduce.pairs"
HOST_PAIRS_ID = "allreduce.pairs"
CLUSTER_KEY = "allreduce_cluster_min_busbw_gbs"
PAIR_KEY = "allreduce_pair_min_busbw_gbs"
MEDIAN_FRACTION = 0.8
FROM_EXPECT = "expect"
FROM_MEDIAN = "0.8 x median of the first pass"
# With no pair of the first pass measured, there is no median: any figure passes, and the
# pairs that failed still count as below.
FROM_NOTHING = "no figure in the first pass"


# --- the whole group -------------------------------------------------------------------------


def _figure(value: float) -> str:
    """One decimal (412.3 GB/s on NVLink), or three significant figures below 1 GB/s (0.0412
    between loopback gloo ranks), where one decimal would read as nothing."""
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.3g}"


def _section(run: GangRun) -> AllreduceSection:
    return summarize_allreduce([doc for _, doc in run.rank_docs()], run.world_size)


def _rank_hosts(run: GangRun) -> dict[int, str]:
    # torchrun numbers ranks node by node: node rank i holds i*nproc .. (i+1)*nproc - 1.
    return {
        node.node_rank * run.nproc_per_node + local: node.host.name
        for node in run.nodes
        for local in range(run.nproc_per_node)
    }


def _node_problem(node: NodeRun) -> str | None:
    return "; ".join(node_problems(node)) or None


def _failures(run: GangRun, section: AllreduceSection) -> dict[str, list[str]]:
    """Per host, what failed there: the job's error on the hosts it names, node errors, and
    ranks that failed or wrote nothing (named by rank)."""
    found: dict[str, list[str]] = {}
    for host in run.failed_hosts:
        found.setdefault(host, []).append(f"the job failed here: {shown(run.error)}")
    for node in run.nodes:
        problem = _node_problem(node)
        if problem:
            found.setdefault(node.host.name, []).append(problem)
    hosts = _rank_hosts(run)
    for entry in section["errors"]:
        rank = entry.get("rank")
        host = hosts.get(rank, "?") if type(rank) is int else "?"
        found.setdefault(host, []).append(f"rank {shown(rank)}: {shown(entry.get('error'))}")
    return found


def _failure_message(run: GangRun, failures: dict[str, list[str]]) -> str:
    told = [f"{host}: {'; '.join(parts)}" for host, parts in failures.items()]
    if run.error and not run.failed_hosts:
        told.insert(0, shown(run.error))
    return f"allreduce failed: {listed(told, len(told), ' | ')}"


def _scope(run: GangRun, net_only: bool) -> str:
    where = f"across {len(run.nodes)} nodes"
    return f"{where}, network only" if net_only else where


def _cluster_metrics(run: GangRun, section: AllreduceSection, net_only: bool) -> dict[str, Any]:
    return {
        "busbw_gbs": section["busbw_gbs"],
        "algbw_gbs": section["algbw_gbs"],
        "bytes": section["bytes"],
        "ranks": section["ranks"],
        "nodes": len(run.nodes),
        "net_only": net_only,
    }


def _cluster_verdict(
    run: GangRun, section: AllreduceSection, threshold: float | None, failures: dict[str, Any]
) -> tuple[Status, str]:
    # Wrong elements are a finding whatever else went wrong; a failure leaves no figure.
    if failures and not section["wrong_total"]:
        return "error", _failure_message(run, failures)
    judged = evaluate_allreduce(section, threshold)[0]
    return judged.status, judged.message


def _host_cluster_result(
    host: str, status: Status, message: str, failures: dict[str, list[str]], figures: Any
) -> Result:
    if host in failures:
        mine = f"{'; '.join(failures[host])} (group: {message})"
        return Result(HOST_CLUSTER_ID, status, mine, kind="bench", metrics=figures)
    if status == "error":
        message = f"not measured: the group's job failed elsewhere ({message})"
    return Result(HOST_CLUSTER_ID, status, message, kind="bench", metrics=figures)


def evaluate_cluster_allreduce(run: GangRun, net_only: bool) -> ClusterJudgement:
    """The group's `cluster.allreduce` result and one `allreduce.cluster` result per host.
    `net_only`: the job ran so that its traffic crossed the network only (it is reported)."""
    section = _section(run)
    threshold = strictest([node.host for node in run.nodes], CLUSTER_KEY, "min")
    failures = _failures(run, section)
    status, verdict = _cluster_verdict(run, section, threshold, failures)
    message = f"{_scope(run, net_only)}: {verdict}"
    metrics = _cluster_metrics(run, section, net_only)
    expected = None if threshold is None else {"min_busbw_gbs": threshold}
    result = Result(
        CLUSTER_ID, status, message, section["busbw_gbs"], expected, "bench", metrics=metrics
    )
    item = cluster_result(result, run.hosts, sizes=list(section["sizes"]))
    hosts = {
        node.host.name: [_host_cluster_result(node.host.name, status, message, failures, metrics)]
        for node in run.nodes
    }
    return ClusterJudgement([item], hosts)


# --- pairs: planning -------------------------------------------------------------------------


def pair_up(hosts: Sequence[Host]) -> list[tuple[Host, Host]]:
    """The first pass: consecutive pairs; an odd node out waits for the second pass."""
    return [(hosts[i], hosts[i + 1]) for i in range(0, len(hosts) - 1, 2)]


def pair_busbw(run: GangRun) -> float | None:
    """A pair's busbw at the largest size; None when the run failed, a rank failed or wrote
    nothing, or any element was wrong (such a pair counts as below any threshold)."""
    section = _section(run)
    if run.error or section["errors"] or section["wrong_total"]:
        return None
    if any(_node_problem(node) for node in run.nodes):
        return None
    return finite(section["busbw_gbs"])


def pairs_threshold(
    first: Sequence[GangRun], expect: Mapping[str, Any] | Expectations | None = None
) -> tuple[float, str]:
    """(threshold GB/s, where it came from). `expect` None: the strictest
    `allreduce_pair_min_busbw_gbs` among the first pass's hosts."""
    if expect is None:
        hosts = [node.host for run in first for node in run.nodes]
        given = strictest(hosts, PAIR_KEY, "min")
    else:
        given = expectations(expect).get(PAIR_KEY)
    if given is not None:
        return float(given), FROM_EXPECT
    figures = [busbw for run in first if (busbw := pair_busbw(run)) is not None]
    if not figures:
        return 0.0, FROM_NOTHING
    return MEDIAN_FRACTION * median(figures), FROM_MEDIAN


def _passed(run: GangRun, threshold: float) -> bool:
    busbw = pair_busbw(run)
    return busbw is not None and busbw >= threshold


def _rotated_pairs(nodes: list[Host], first: set[frozenset[str]]) -> list[tuple[Host, Host]]:
    """With no passing pair to borrow from: the nodes to re-test paired among themselves,
    shifted by one so that no pair of the first pass repeats."""
    shifted = nodes[1:] + nodes[:1]
    pairs = pair_up(shifted)
    return [pair for pair in pairs if frozenset(h.name for h in pair) not in first]


def second_pass(
    first: Sequence[GangRun], threshold: float, hosts: Sequence[Host] = ()
) -> list[tuple[Host, Host]]:
    """The second pass: each node of a first-pass pair below `threshold` paired with a node
    of a passing pair, and each node of `hosts` (the whole group) that ran in no first-pass
    pair (the odd one out) with two of them, so it too can be below with two partners.

    Partners are distinct while passing nodes last, then reused in turn, so the pairs may
    share a node: run them in `waves`.
    """
    good: list[Host] = []
    retest: list[tuple[Host, int]] = []
    for run in first:
        nodes = [node.host for node in run.nodes]
        if _passed(run, threshold):
            good += nodes
        else:
            retest += [(host, 1) for host in nodes]
    tested = {node.host.name for run in first for node in run.nodes}
    retest += [(host, 2) for host in hosts if host.name not in tested]
    if not good:
        pairs = {frozenset(node.host.name for node in run.nodes) for run in first}
        return _rotated_pairs([host for host, _ in retest], pairs)
    partners = cycle(good)
    planned: list[tuple[Host, Host]] = []
    for host, count in retest:
        # A lone passing node cannot be two partners of one node.
        for partner in islice(partners, min(count, len(good))):
            planned.append((host, partner))
    return planned


def waves(pairs: Sequence[tuple[Host, Host]]) -> list[list[tuple[Host, Host]]]:
    """The pairs in waves that can each run at once: no node in two pairs of one wave."""
    found: list[list[tuple[Host, Host]]] = []
    busy: list[set[str]] = []
    for pair in pairs:
        names = {pair[0].name, pair[1].name}
        for wave, taken in zip(found, busy, strict=True):
            if not names & taken:
                wave.append(pair)
                taken |= names
                break
        else:
            found.append([pair])
            busy.append(set(names))
    return found


# --- pairs: the verdict ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One pair run from one node's side."""

    partner: str
    busbw: float | None
    passed: bool
    round: int


def _gbs(value: float | None) -> str:
    return "failed" if value is None else f"{_figure(value)} GB/s"


def _with(seen: Seen) -> str:
    return f"{_gbs(seen.busbw)} with {seen.partner}"


def _pair_result(run: GangRun, round_: int, threshold: float, source: str) -> dict[str, Any]:
    section = _section(run)
    busbw = pair_busbw(run)
    a_b = " <-> ".join(run.hosts)
    figure = f"busbw {_gbs(busbw)} at {size_text(section['bytes'])}"
    status: Status = "pass"
    if busbw is None:
        failures = _failures(run, section)
        wrong = section["wrong_total"]
        status = "fail" if wrong else "error"
        told = f"{wrong} wrong elements" if wrong else _failure_message(run, failures)
        message = f"{a_b} (pass {round_}): {told}"
    elif busbw >= threshold:
        message = f"{a_b} (pass {round_}): {figure}, at least {_figure(threshold)} GB/s ({source})"
    else:
        status = "fail"
        message = f"{a_b} (pass {round_}): {figure}, below {_figure(threshold)} GB/s ({source})"
    metrics = {
        "busbw_gbs": section["busbw_gbs"],
        "algbw_gbs": section["algbw_gbs"],
        "bytes": section["bytes"],
        "ranks": section["ranks"],
    }
    expected = {"min_busbw_gbs": threshold}
    result = Result(PAIR_ID, status, message, busbw, expected, "bench", metrics=metrics)
    # The pair's sweep, for the report's busbw-against-size plot.
    sizes = list(section.get("sizes") or [])
    return cluster_result(result, run.hosts, sizes=sizes, **{"pass": round_})


def _observations(rounds: list[tuple[int, GangRun]], threshold: float) -> dict[str, list[Seen]]:
    seen: dict[str, list[Seen]] = {}
    for round_, run in rounds:
        busbw = pair_busbw(run)
        passed = busbw is not None and busbw >= threshold
        for host in run.hosts:
            for partner in run.hosts:
                if partner != host:
                    seen.setdefault(host, []).append(Seen(partner, busbw, passed, round_))
    return seen


@dataclass
class Findings:
    flagged: list[str]
    slow_paths: list[tuple[str, str]]
    unresolved: list[tuple[str, str]]


def _below_partners(seen: list[Seen]) -> set[str]:
    return {s.partner for s in seen if not s.passed}


def _passes_elsewhere(seen: list[Seen], other: str) -> bool:
    return any(s.passed and s.partner != other for s in seen)


def _findings(rounds: list[tuple[int, GangRun]], seen: dict[str, list[Seen]]) -> Findings:
    flagged = [host for host, mine in seen.items() if len(_below_partners(mine)) >= 2]
    slow_paths: list[tuple[str, str]] = []
    unresolved: list[tuple[str, str]] = []
    for _, run in rounds:
        if len(run.hosts) != 2:
            continue
        a, b = run.hosts
        below = not any(s.passed for s in seen[a] if s.partner == b)
        if not below or a in flagged or b in flagged or (a, b) in slow_paths:
            continue
        if _passes_elsewhere(seen[a], b) and _passes_elsewhere(seen[b], a):
            slow_paths.append((a, b))
        elif (a, b) not in unresolved:
            unresolved.append((a, b))
    return Findings(flagged, slow_paths, unresolved)


def _flag_text(host: str, seen: list[Seen], threshold: float) -> str:
    below = [s for s in seen if not s.passed]
    return f"{host} (below {_figure(threshold)} GB/s: {', '.join(_with(s) for s in below)})"


def _path_text(a: str, b: str, seen: dict[str, list[Seen]]) -> str:
    together = next(s for s in seen[a] if s.partner == b)
    a_ok = next(s for s in seen[a] if s.passed)
    b_ok = next(s for s in seen[b] if s.passed)
    return (
        f"{a} <-> {b} at {_gbs(together.busbw)}, while {a} reaches {_with(a_ok)} and "
        f"{b} {_with(b_ok)}"
    )


def _unresolved_text(a: str, b: str, seen: dict[str, list[Seen]]) -> str:
    together = next(s for s in seen[a] if s.partner == b)
    return f"{a} <-> {b} at {_gbs(together.busbw)}, not told apart by other partners"


def _summary_message(
    found: Findings, seen: dict[str, list[Seen]], threshold: float, source: str
) -> str:
    parts = []
    if found.flagged:
        word = "slow node" if len(found.flagged) == 1 else "slow nodes"
        named = [_flag_text(host, seen[host], threshold) for host in found.flagged]
        parts.append(f"{word}: {listed(named, len(named), '; ')}")
    if found.slow_paths:
        told = [_path_text(a, b, seen) for a, b in found.slow_paths]
        parts.append(f"slow path: {listed(told, len(told), '; ')}")
    if found.unresolved:
        told = [_unresolved_text(a, b, seen) for a, b in found.unresolved]
        parts.append(f"below {_figure(threshold)} GB/s: {listed(told, len(told), '; ')}")
    if not parts:
        figures = [s.busbw for mine in seen.values() for s in mine if s.busbw is not None]
        span = f"{_figure(min(figures))}-{_figure(max(figures))} GB/s" if figures else "no figures"
        parts.append(f"every pair at least {_figure(threshold)} GB/s ({span})")
    return f"{'; '.join(parts)} (threshold {_figure(threshold)} GB/s, {source})"


def _summary_status(found: Findings, seen: dict[str, list[Seen]]) -> Status:
    if found.flagged:
        return "fail"
    if not seen:
        return "skip"
    if all(s.busbw is None for mine in seen.values() for s in mine):
        return "error"
    return "warn" if found.slow_paths or found.unresolved else "pass"


def _host_pairs_result(host: str, mine: list[Seen], found: Findings, threshold: float) -> Result:
    pairs = [{"partner": s.partner, "busbw_gbs": s.busbw, "pass": s.round} for s in mine]
    metrics = {"pairs": pairs}
    figures = ", ".join(_with(s) for s in mine)
    status: Status = "pass"
    message = f"pairs: {figures}, at least {_figure(threshold)} GB/s"
    if host in found.flagged:
        status = "fail"
        below = sorted(_below_partners(mine))
        partners = listed(below, len(below))
        message = f"slow node: below {_figure(threshold)} GB/s with {partners}: {figures}"
    elif any(host in path for path in found.slow_paths + found.unresolved):
        status = "warn"
        message = f"pairs: {figures}; below {_figure(threshold)} GB/s with one partner only"
    elif any(not s.passed for s in mine):
        # Below only with a node flagged slow: that node explains it.
        message = f"pairs: {figures}; below {_figure(threshold)} GB/s only with a slow node"
    expected = {"min_busbw_gbs": threshold}
    return Result(HOST_PAIRS_ID, status, message, None, expected, "bench", metrics=metrics)


def evaluate_pairs(
    first: Sequence[GangRun], second: Sequence[GangRun], threshold: float, source: str
) -> ClusterJudgement:
    """One `cluster.allreduce.pair` per run, the `cluster.allreduce.pairs` summary, and per
    host that ran an `allreduce.pairs` result."""
    rounds = [(1, run) for run in first] + [(2, run) for run in second]
    seen = _observations(rounds, threshold)
    found = _findings(rounds, seen)
    items = [_pair_result(run, round_, threshold, source) for round_, run in rounds]
    status = _summary_status(found, seen)
    message = _summary_message(found, seen, threshold, source)
    observed = {"flagged": list(found.flagged)}
    expected = {"min_busbw_gbs": threshold}
    summary = Result(PAIRS_ID, status, message, observed, expected, "bench")
    hosts = list(seen)
    items.append(
        cluster_result(
            summary,
            hosts,
            flagged=list(found.flagged),
            slow_paths=[list(path) for path in found.slow_paths],
            unresolved=[list(pair) for pair in found.unresolved],
            threshold_gbs=threshold,
            threshold_from=source,
        )
    )
    per_host = {host: [_host_pairs_result(host, seen[host], found, threshold)] for host in hosts}
    return ClusterJudgement(items, per_host)
