"""What an audit says: only what changed since the previous audit. Cron mails whatever a job
prints, so two audits that found the same problems print nothing the second time; a problem
that is new, that got worse or better, or that went away is one line each.

A finding is a result that is not a pass (warn, fail, error) or a host that could not be
evaluated; it is the same finding in two audits when host, result id and GPU are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FINDING_STATUSES = ("warn", "fail", "error")
# A host that could not be evaluated, as a finding of its own.
HOST_FINDING = "host"
_RANK = {"warn": 1, "fail": 2, "error": 2}

ChangeKind = Literal["new", "worse", "better", "recovered"]


@dataclass(frozen=True)
class Finding:
    host: str
    result_id: str
    gpu_index: int | None
    status: str
    message: str

    @property
    def key(self) -> tuple[str, str, int | None]:
        return (self.host, self.result_id, self.gpu_index)


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


def document_findings(document: Mapping[str, Any]) -> list[Finding]:
    """The findings of a run document, in its order."""
    found: list[Finding] = []
    for host in document.get("hosts") or []:
        name = str(host["name"])
        error = host.get("error")
        if error:
            found.append(Finding(name, HOST_FINDING, None, "error", str(error.get("message"))))
        for result in host.get("results") or []:
            if result.get("status") in FINDING_STATUSES:
                found.append(
                    Finding(
                        name,
                        str(result["id"]),
                        _gpu_index(result),
                        str(result["status"]),
                        str(result.get("message") or ""),
                    )
                )
    return found


def changes(
    previous: Iterable[Finding], current: Sequence[Finding], evaluated: Iterable[str]
) -> list[Change]:
    """From the previous audit's findings to this one's. A finding of a host this audit could
    not evaluate has not gone away: only hosts in `evaluated` can recover."""
    before = {finding.key: finding for finding in previous}
    now = {finding.key: finding for finding in current}
    listed: list[Change] = []
    for key, finding in now.items():
        old = before.get(key)
        if old is None:
            listed.append(Change("new", finding))
        elif _RANK[finding.status] > _RANK[old.status]:
            listed.append(Change("worse", finding, old.status))
        elif _RANK[finding.status] < _RANK[old.status]:
            listed.append(Change("better", finding, old.status))
    hosts_seen = set(evaluated)
    for key, old in before.items():
        if key not in now and old.host in hosts_seen:
            listed.append(Change("recovered", old, old.status))
    return listed


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
