"""Allreduce across a group's nodes: the whole-group sweep and the pair test that finds the slow
node, from rank documents shaped as the allreduce worker writes them."""

from __future__ import annotations

from typing import Any

from dcctl.evaluate.cluster_allreduce import (
    FROM_EXPECT,
    FROM_MEDIAN,
    evaluate_cluster_allreduce,
    evaluate_pairs,
    pair_busbw,
    pair_up,
    pairs_threshold,
    second_pass,
    waves,
)
from dcctl.evaluate.gang_input import GangRun, NodeRun
from dcctl.inventory.model import Host

GIB = 1024**3


def rank_docs(world: int, busbw: float, wrong: int = 0) -> list[dict[str, Any]]:
    """Rank 0 carries the sweep (two sizes, the largest at `busbw`); every rank its wrong
    count."""
    sizes = [
        {"bytes": size, "count": size // 4, "iterations": 20, "time_us": 100.0,
         "algbw_gbs": figure / 2, "busbw_gbs": figure, "wrong": wrong if size == GIB else 0}
        for size, figure in ((1024, 0.5), (GIB, busbw))
    ]  # fmt: skip
    zero = {
        "rank": 0,
        "world_size": world,
        "backend": "nccl",
        "device": "cuda",
        "dtype": "float32",
        "in_place": False,
        "max_bytes": GIB,
        "sizes": sizes,
        "versions": {"torch": "2.13.0"},
        "wrong_total": wrong,
        "wrong_local": wrong,
    }
    return [zero] + [{"rank": r, "wrong_local": 0} for r in range(1, world)]


def hosts(*names: str, expect: dict[str, Any] | None = None) -> list[Host]:
    return [Host(name=n, address=n, expect=dict(expect or {})) for n in names]


def run(
    members: list[Host], busbw: float | None, nproc: int = 1, error: str | None = None
) -> GangRun:
    """A gang job over `members`; busbw None: the last node died and wrote nothing."""
    world = nproc * len(members)
    docs = rank_docs(world, busbw or 0.0)
    failed: tuple[str, ...] = ()
    if busbw is None:
        docs = docs[: world - nproc]
        error = error or f"node {members[-1].name} died"
        failed = (members[-1].name,)
    nodes = tuple(
        NodeRun(host, i, {"ranks": [d for d in docs if d["rank"] // nproc == i], "error": None})
        for i, host in enumerate(members)
    )
    return GangRun(nodes, nproc, error, failed)


# Pair figures: a healthy pair reaches 40 GB/s; anything with the slow node `c`, 10.
def pair_run(a: Host, b: Host, slow: set[str], path: frozenset[str] = frozenset()) -> GangRun:
    slow_here = {a.name, b.name} & slow or {a.name, b.name} == path
    return run([a, b], 10.0 if slow_here else 40.0)


def names(pairs: list[tuple[Host, Host]]) -> list[tuple[str, str]]:
    return [(a.name, b.name) for a, b in pairs]


# --- the whole group ---------------------------------------------------------------------------


def test_cluster_allreduce_is_judged_against_the_strictest_host() -> None:
    group = hosts("a", "b")
    group[1] = Host(name="b", address="b", expect={"allreduce_cluster_min_busbw_gbs": 50})
    judgement = evaluate_cluster_allreduce(run(group, 40.0, nproc=2), net_only=True)
    [item] = judgement.cluster_results
    assert (item["id"], item["status"], item["observed"]) == ("cluster.allreduce", "fail", 40.0)
    assert item["expected"] == {"min_busbw_gbs": 50.0}
    assert item["metrics"] == {
        "busbw_gbs": 40.0,
        "algbw_gbs": 20.0,
        "bytes": GIB,
        "ranks": 4,
        "nodes": 2,
        "net_only": True,
    }
    assert item["message"].startswith("across 2 nodes, network only: busbw 40.0 GB/s at 1 GiB")
    assert len(item["sizes"]) == 2 and item["hosts"] == ["a", "b"]
    assert {h: [(r.id, r.status) for r in rs] for h, rs in judgement.host_results.items()} == {
        "a": [("allreduce.cluster", "fail")],
        "b": [("allreduce.cluster", "fail")],
    }


def test_cluster_allreduce_without_threshold_reports_and_errors_name_the_host() -> None:
    [item] = evaluate_cluster_allreduce(run(hosts("a", "b"), 40.0), False).cluster_results
    assert (item["status"], item["expected"]) == ("pass", None)
    judgement = evaluate_cluster_allreduce(run(hosts("a", "b"), None, nproc=2), False)
    [item] = judgement.cluster_results
    assert item["status"] == "error"
    assert "b: the job failed here: node b died" in item["message"]
    assert "rank 2: wrote no result" in item["message"]
    assert judgement.host_results["b"][0].message.startswith("the job failed here")
    assert judgement.host_results["a"][0].message.startswith("not measured")


def test_wrong_elements_fail() -> None:
    group = hosts("a", "b")
    wrong = GangRun(
        tuple(
            NodeRun(h, i, {"ranks": [d for d in rank_docs(2, 40.0, wrong=3) if d["rank"] == i]})
            for i, h in enumerate(group)
        ),
        1,
    )
    [item] = evaluate_cluster_allreduce(wrong, False).cluster_results
    assert item["status"] == "fail" and "3 wrong elements" in item["message"]
    assert pair_busbw(wrong) is None


# --- pairs -------------------------------------------------------------------------------------


def test_four_nodes_one_slow_flags_exactly_that_one() -> None:
    group = hosts("a", "b", "c", "d")
    first_pairs = pair_up(group)
    assert names(first_pairs) == [("a", "b"), ("c", "d")]
    first = [pair_run(a, b, {"c"}) for a, b in first_pairs]
    threshold, source = pairs_threshold(first)
    assert (threshold, source) == (0.8 * 25.0, FROM_MEDIAN)
    planned = second_pass(first, threshold, group)
    assert names(planned) == [("c", "a"), ("d", "b")]
    assert len(waves(planned)) == 1
    second = [pair_run(a, b, {"c"}) for a, b in planned]
    judgement = evaluate_pairs(first, second, threshold, source)
    *pairs, summary = judgement.cluster_results
    assert [(p["id"], p["pass"], p["hosts"], p["status"]) for p in pairs] == [
        ("cluster.allreduce.pair", 1, ["a", "b"], "pass"),
        ("cluster.allreduce.pair", 1, ["c", "d"], "fail"),
        ("cluster.allreduce.pair", 2, ["c", "a"], "fail"),
        ("cluster.allreduce.pair", 2, ["d", "b"], "pass"),
    ]
    assert summary["id"] == "cluster.allreduce.pairs"
    assert (summary["status"], summary["flagged"]) == ("fail", ["c"])
    assert summary["observed"] == {"flagged": ["c"]}
    assert summary["message"] == (
        "slow node: c (below 20.0 GB/s: 10.0 GB/s with d, 10.0 GB/s with a) "
        "(threshold 20.0 GB/s, 0.8 x median of the first pass)"
    )
    assert (summary["threshold_gbs"], summary["threshold_from"]) == (20.0, FROM_MEDIAN)
    status = {h: rs[0].status for h, rs in judgement.host_results.items()}
    assert status == {"a": "pass", "b": "pass", "c": "fail", "d": "pass"}
    assert "with a, d" in judgement.host_results["c"][0].message


def test_an_odd_node_gets_two_partners_in_the_second_pass() -> None:
    group = hosts("a", "b", "c", "d", "e")
    first = [pair_run(a, b, {"e"}) for a, b in pair_up(group)]
    assert [r.hosts for r in first] == [["a", "b"], ["c", "d"]]
    threshold, source = pairs_threshold(first)
    planned = second_pass(first, threshold, group)
    assert names(planned) == [("e", "a"), ("e", "b")]
    assert len(waves(planned)) == 2
    second = [pair_run(a, b, {"e"}) for a, b in planned]
    summary = evaluate_pairs(first, second, threshold, source).cluster_results[-1]
    assert summary["flagged"] == ["e"]
    # A healthy odd node passes.
    healthy = [pair_run(a, b, set()) for a, b in planned]
    summary = evaluate_pairs(first, healthy, threshold, source).cluster_results[-1]
    assert (summary["status"], summary["flagged"]) == ("pass", [])


def test_a_slow_path_between_two_good_nodes_warns_and_flags_no_one() -> None:
    group = hosts("a", "b", "c", "d", "e", "f")
    path = frozenset({"a", "b"})
    first = [pair_run(a, b, set(), path) for a, b in pair_up(group)]
    threshold, source = pairs_threshold(first)
    planned = second_pass(first, threshold, group)
    assert names(planned) == [("a", "c"), ("b", "d")]
    second = [pair_run(a, b, set(), path) for a, b in planned]
    judgement = evaluate_pairs(first, second, threshold, source)
    summary = judgement.cluster_results[-1]
    assert (summary["status"], summary["flagged"]) == ("warn", [])
    assert summary["slow_paths"] == [["a", "b"]]
    assert summary["message"].startswith(
        "slow path: a <-> b at 10.0 GB/s, while a reaches 40.0 GB/s with c and b 40.0 GB/s with d"
    )
    assert judgement.host_results["a"][0].status == "warn"
    assert judgement.host_results["c"][0].status == "pass"


def test_threshold_from_expect_else_median() -> None:
    group = hosts("a", "b", "c", "d", expect={"allreduce_pair_min_busbw_gbs": 45})
    first = [pair_run(a, b, set()) for a, b in pair_up(group)]
    assert pairs_threshold(first) == (45.0, FROM_EXPECT)
    assert pairs_threshold(first, {"allreduce_pair_min_busbw_gbs": 30}) == (30.0, FROM_EXPECT)
    assert pairs_threshold(first, {}) == (0.8 * 40.0, FROM_MEDIAN)
    # Against 45 every pair is below: the second pass has no passing node to borrow, so the
    # nodes are re-paired among themselves, never with their first partner.
    planned = second_pass(first, 45.0, group)
    assert names(planned) == [("b", "c"), ("d", "a")]


def test_a_failed_pair_counts_as_below() -> None:
    group = hosts("a", "b", "c", "d")
    first = [run(group[:2], 40.0), run(group[2:], None)]
    assert pair_busbw(first[1]) is None
    threshold, source = pairs_threshold(first)
    assert threshold == 32.0
    assert names(second_pass(first, threshold, group)) == [("c", "a"), ("d", "b")]
    second = [run([group[2], group[0]], 40.0), run([group[1], group[3]], None)]  # d died again
    judgement = evaluate_pairs(first, second, threshold, source)
    summary = judgement.cluster_results[-1]
    assert summary["flagged"] == ["d"]
    assert "failed with c, failed with b" in summary["message"]
    assert judgement.cluster_results[1]["status"] == "error"
