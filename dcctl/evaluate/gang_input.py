"""What a gang job (one torchrun job across the nodes of a group) hands its cluster evaluator,
and what the evaluator gives back.

A gang is all-or-nothing: `GangRun.error` says why the group ended before its workers did
(a node that could not start, did not join, died, or the deadline), naming the nodes in
`failed_hosts`. Each node's payload holds the documents its own ranks wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from dcctl.evaluate.result import Result
from dcctl.inventory.model import Host
from dcctl.transport.base import HostError


@dataclass(frozen=True)
class NodeRun:
    """One node of a gang: its place in the job and what its `gang` task returned."""

    host: Host
    node_rank: int
    payload: dict[str, Any] | None
    error: HostError | None = None
    duration_s: float = 0.0

    def rank_docs(self) -> list[dict[str, Any]]:
        ranks = (self.payload or {}).get("ranks")
        return [doc for doc in ranks if isinstance(doc, dict)] if isinstance(ranks, list) else []


@dataclass(frozen=True)
class GangRun:
    """One group's job: every node in node-rank order, and why it ended early, if it did."""

    nodes: tuple[NodeRun, ...]
    nproc_per_node: int
    error: str | None = None
    failed_hosts: tuple[str, ...] = ()
    duration_s: float = 0.0

    @property
    def hosts(self) -> list[str]:
        return [node.host.name for node in self.nodes]

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * len(self.nodes)

    def rank_docs(self) -> Iterator[tuple[NodeRun, dict[str, Any]]]:
        """Every rank's document with the node it ran on, in node order."""
        for node in self.nodes:
            for doc in node.rank_docs():
                yield node, doc


@dataclass(frozen=True)
class ClusterJudgement:
    """Run-document items for `cluster_results` (Result.to_json() plus "hosts" and extras),
    and, per host name, the results that concern that host."""

    cluster_results: list[dict[str, Any]] = field(default_factory=list)
    host_results: dict[str, list[Result]] = field(default_factory=dict)


def cluster_result(result: Result, hosts: list[str], **extra: Any) -> dict[str, Any]:
    """A `cluster_results` item: the result, the hosts it spans, and any extra fields."""
    return {**result.to_json(), "hosts": list(hosts), **extra}
