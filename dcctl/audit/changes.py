"""What an audit says: only what changed since the previous audit. Cron mails whatever a job
prints, so two audits that found the same problems print nothing the second time; a problem
that is new, that got worse or better, or that went away is one line each.

A finding is a result that is not a pass (warn, fail, error), a host that could not be
evaluated, or a cluster verdict that is not a pass (under the host CLUSTER_HOST); it is the
same finding in two audits when host, step, result id and GPU are the same. A finding has gone
away only where its host ran its step this time: a step that did not run (skipped, stopped)
recovers nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dcctl.results.history_query import CLUSTER_HOST, Finding

FINDING_STATUSES = ("warn", "fail", "error")
# A host that could not be evaluated, as a finding of its own.
HOST_FINDING = "host"
_RANK = {"warn": 1, "fail": 2, "error": 2}

ChangeKind = Literal["new", "worse", "better", "recovered"]


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    finding: Finding
    # The status the previous audit had for it (None for a new finding).
    was: str | None = None


def _gpu_index(result: Mapping[str, Any]) -> int | None:
    gpu = result.get("gpu")
    index = gpu.get("index") if isinstance(gpu, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _result_finding(host: str, result: Mapping[str, Any]) -> Finding:
    step = result.get("step")
    return Finding(
        host,
        str(result["id"]),
        _gpu_index(result),
        str(result["status"]),
        str(result.get("message") or ""),
        str(step) if step is not None else None,
    )


def document_findings(document: Mapping[str, Any]) -> list[Finding]:
    """The findings of a run document, in its order."""
    found: list[Finding] = []
    for host in document.get("hosts") or []:
        name = str(host["name"])
        error = host.get("error")
        if error:
            found.append(Finding(name, HOST_FINDING, None, "error", str(error.get("message"))))
        found += [
            _result_finding(name, result)
            for result in host.get("results") or []
            if result.get("status") in FINDING_STATUSES
        ]
    found += [
        _result_finding(CLUSTER_HOST, result)
        for result in document.get("cluster_results") or []
        if result.get("status") in FINDING_STATUSES
    ]
    return found


def evaluated(document: Mapping[str, Any]) -> set[tuple[str, str | None]]:
    """(host, step) for every step a host ran to the end, and (host, None) for every host
    that was evaluated at all: where a finding may have gone away."""
    pairs: set[tuple[str, str | None]] = set()
    for host in document.get("hosts") or []:
        steps = {result.get("step") for result in host.get("results") or []}
        pairs |= {(str(host["name"]), str(step)) for step in steps if step is not None}
        if not host.get("error"):
            pairs.add((str(host["name"]), None))
    for result in document.get("cluster_results") or []:
        if result.get("step") is not None:
            pairs.add((CLUSTER_HOST, str(result["step"])))
    return pairs


def changes(
    previous: Iterable[Finding],
    current: Sequence[Finding],
    ran: Collection[tuple[str, str | None]],
) -> list[Change]:
    """From the previous audit's findings to this one's. A finding of the previous audit is
    recovered only where its host ran its step again (`ran`, from `evaluated`)."""
    before = {_keyed(finding).key: finding for finding in previous}
    now = {_keyed(finding).key: finding for finding in current}
    listed: list[Change] = []
    for key, finding in now.items():
        old = before.get(key)
        if old is None:
            listed.append(Change("new", finding))
        elif _RANK[finding.status] > _RANK[old.status]:
            listed.append(Change("worse", finding, old.status))
        elif _RANK[finding.status] < _RANK[old.status]:
            listed.append(Change("better", finding, old.status))
    for key, old in before.items():
        if key not in now and (old.host, _keyed(old).step) in ran:
            listed.append(Change("recovered", old, old.status))
    return listed


def _keyed(finding: Finding) -> Finding:
    """A host that could not be evaluated is one finding whichever step it happened in."""
    if finding.result_id == HOST_FINDING and finding.step is not None:
        return Finding(finding.host, HOST_FINDING, None, finding.status, finding.message)
    return finding


def _subject(finding: Finding) -> str:
    gpu = f" GPU {finding.gpu_index}" if finding.gpu_index is not None else ""
    return f"{finding.host}{gpu}"


def change_line(change: Change) -> str:
    """One line a person reads in a cron mail."""
    finding = change.finding
    what = (
        "unreachable or not evaluated" if finding.result_id == HOST_FINDING else finding.result_id
    )
    if change.kind == "recovered":
        return f"{_subject(finding)}: recovered: {what} (was {change.was})"
    label = finding.status.upper()
    if finding.result_id.startswith("baseline."):
        label = f"REGRESSION {label}"
    prefix = {
        "new": "new",
        "worse": f"worse (was {change.was})",
        "better": f"better (was {change.was})",
    }[change.kind]
    return f"{_subject(finding)}: {prefix} {label}: {what}: {finding.message}"
