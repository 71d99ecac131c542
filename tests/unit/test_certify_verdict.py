"""The certify verdict, from rank documents shaped as the certify worker writes them
(/tmp/gang/CONTRACT.md, "Rank doc"), built here without torch."""

from __future__ import annotations

import random
from typing import Any

import pytest

from dcctl.evaluate.certify import LOSS_TAIL, MIN_EXCESS_S, evaluate_certify, loss_curve
from dcctl.evaluate.cluster_stats import high_outliers, median, percentile
from dcctl.evaluate.gang_input import ClusterJudgement, GangRun, NodeRun
from dcctl.inventory.model import Host
from dcctl.transport.base import HostError

H100 = "NVIDIA H100 80GB HBM3"
STEPS = 40
LOCAL_S = 0.010


def rank_doc(rank: int, nproc: int, host: str, **changes: Any) -> dict[str, Any]:
    """A healthy rank's document; `changes` replace top-level keys."""
    gpu_name = changes.pop("gpu_name", None)
    local = rank % nproc
    losses = [1.0 * 0.9**step for step in range(STEPS)]
    doc: dict[str, Any] = {
        "rank": rank,
        "local_rank": local,
        "node_rank": rank // nproc,
        "world_size": 0,  # set by gang()
        "hostname": host,
        "device": "cuda" if gpu_name else "cpu",
        "backend": "nccl" if gpu_name else "gloo",
        "gpu": None,
        "versions": {"torch": "2.13.0", "nccl": "2.27.3", "cuda": "12.8"},
        "model": {
            "hidden": 256,
            "layers": 2,
            "in_dim": 64,
            "out_dim": 16,
            "params": 150_000,
            "dtype": "bf16" if gpu_name else "fp32",
            "batch_per_rank": 32,
            "flops_per_sample": 900_000.0,
        },
        "seed": 1234,
        "steps": STEPS,
        "loss_target": 0.05,
        "losses": list(losses),
        "global_losses": list(losses),
        "step_s": {"p50": 0.012, "p99": 0.015, "mean": 0.0125},
        "local_s": {"p50": LOCAL_S, "p99": 0.011, "mean": 0.0101},
        "samples_per_s": 2_000.0,
        "checksums": [{"step": s, "value": f"{s:08x}"} for s in (10, 20, 30, STEPS)],
        "replay": {"steps": 5, "match": True, "first_mismatch_step": None},
        "fault": None,
    }
    if gpu_name:
        # An 8 x 8192 MLP's figures: MFU 80,000 x 6.4 GFLOP / 989.5 TFLOP/s = 0.52 on an H100.
        doc["model"].update(params=1_070_000_000, flops_per_sample=6.4e9)
        doc["samples_per_s"] = 80_000.0
        doc["gpu"] = {
            "index": local,
            "name": gpu_name,
            "uuid": f"GPU-{rank}",
            "pci_bus_id": f"00000000:{0x18 + local:02X}:00.0",
        }
    doc.update(changes)
    return doc


def gang(
    docs: list[dict[str, Any]],
    nproc: int,
    expect: dict[str, Any] | None = None,
    error: str | None = None,
    failed: tuple[str, ...] = (),
    nodes: int | None = None,
    node_errors: dict[int, HostError] | None = None,
    launched: bool = True,
) -> GangRun:
    """A GangRun whose node i holds the docs of ranks i*nproc .. (i+1)*nproc - 1; with
    `launched` False no node's task returned (as when one could not start)."""
    count = nodes if nodes is not None else max(1, -(-len(docs) // nproc))
    runs = []
    for index in range(count):
        host = Host(name=f"n{index}", address=f"10.0.0.{index}", expect=dict(expect or {}))
        mine = [d for d in docs if d["rank"] // nproc == index]
        for doc in mine:
            doc["world_size"] = count * nproc
        gpus = [
            {**doc["gpu"], "serial": f"SN{doc['rank']}", "memory_total_mib": 81559}
            for doc in mine
            if doc.get("gpu")
        ]
        error_for = (node_errors or {}).get(index)
        payload: dict[str, Any] | None = None
        if not error_for and launched:
            payload = {"node_rank": index, "ranks": mine, "gpus": gpus, "driver": "570.86",
                       "cuda": "12.8", "launch_error": None}  # fmt: skip
        runs.append(NodeRun(host, index, payload, error_for))
    return GangRun(tuple(runs), nproc, error, failed)


def healthy(world: int, nproc: int, gpu_name: str | None = None) -> list[dict[str, Any]]:
    return [rank_doc(r, nproc, f"n{r // nproc}", gpu_name=gpu_name) for r in range(world)]


def cert(judgement: ClusterJudgement) -> dict[str, Any]:
    [item] = judgement.cluster_results
    assert item["id"] == "certify"
    return item


def reasons(judgement: ClusterJudgement) -> list[str]:
    reasons: list[str] = cert(judgement)["certificate"]["reasons"]
    return reasons


# --- healthy -------------------------------------------------------------------------------------


def test_a_healthy_group_is_certified() -> None:
    judgement = evaluate_certify(gang(healthy(4, 2), 2))
    item = cert(judgement)
    assert (item["status"], item["observed"]) == ("pass", "certified")
    assert item["hosts"] == ["n0", "n1"]
    assert item["message"].startswith("certified: 4 ranks on 2 hosts, final loss")
    assert "8,000 samples/s" in item["message"]
    metrics = item["metrics"]
    assert metrics["samples_per_s"] == 8_000.0
    assert metrics["samples_per_s_per_rank"] == 2_000.0
    assert metrics["loss_initial"] == 1.0
    assert metrics["loss_final"] == pytest.approx(sum(0.9**s for s in range(35, 40)) / LOSS_TAIL)
    assert (metrics["ranks"], metrics["nodes"], metrics["mfu"]) == (4, 2, None)
    certificate = item["certificate"]
    assert certificate["verdict"] == "certified" and certificate["reasons"] == []
    assert certificate["versions"]["n1"] == {
        "torch": "2.13.0",
        "nccl": "2.27.3",
        "cuda": "12.8",
        "driver": "570.86",
    }
    assert [r["rank"] for r in certificate["ranks"]] == [0, 1, 2, 3]
    assert certificate["loss_curve"][0] == [1, 1.0]
    assert certificate["thresholds"]["loss_target"] == 0.05
    statuses = {h: [(r.id, r.status) for r in rs] for h, rs in judgement.host_results.items()}
    assert statuses == {
        "n0": [("certify.rank", "pass")] * 2,
        "n1": [("certify.rank", "pass")] * 2,
    }


def test_loss_not_reached() -> None:
    docs = healthy(2, 1)
    for doc in docs:
        doc["global_losses"] = [1.0] * STEPS
    judgement = evaluate_certify(gang(docs, 1))
    assert cert(judgement)["status"] == "fail"
    assert reasons(judgement) == [
        f"loss not reached: final loss 1 (mean of the last {LOSS_TAIL} steps) above the target 0.05"
    ]
    # The worker writes a non-finite loss as null: it fails the target, it does not vanish.
    diverged = healthy(2, 1)
    diverged[0]["global_losses"][-1] = None
    assert reasons(evaluate_certify(gang(diverged, 1)))[0].startswith(
        "loss not reached: final loss nan"
    )
    # The inventory's ceiling, the strictest among the hosts, replaces the worker's target.
    strict = evaluate_certify(gang(healthy(2, 1), 1, expect={"certify_max_final_loss": 0.001}))
    assert reasons(strict)[0].startswith("loss not reached")


# --- checksums and replay ------------------------------------------------------------------------


def test_a_bitflip_on_one_rank_names_that_rank_host_and_gpu() -> None:
    docs = healthy(4, 2, H100)
    docs[1]["checksums"] = [
        {"step": s, "value": "bad" if s >= 20 else f"{s:08x}"} for s in (10, 20, 30, STEPS)
    ]
    judgement = evaluate_certify(gang(docs, 2))
    assert cert(judgement)["status"] == "fail"
    assert reasons(judgement) == [
        "checksum mismatch at step 20: rank 1 on n0 (GPU 1, 00000000:19:00.0) differs from the "
        "other 3 ranks (off at 3 of 4 checksummed steps)"
    ]
    [zero, one] = judgement.host_results["n0"]
    assert (zero.status, one.status) == ("pass", "fail")
    assert one.gpu == {"index": 1, "pci_bus_id": "00000000:19:00.0", "serial": "SN1"}
    ranks = cert(judgement)["certificate"]["ranks"]
    assert [r["checksum_ok"] for r in ranks] == [True, False, True, True]


def test_a_two_rank_split_names_both() -> None:
    docs = healthy(2, 1)
    docs[1]["checksums"] = [{"step": s, "value": "other"} for s in (10, 20, 30, STEPS)]
    found = reasons(evaluate_certify(gang(docs, 1)))
    assert len(found) == 1
    assert found[0].startswith("checksum mismatch at step 10: the 2 ranks split 1 vs 1 with no")
    assert found[0].endswith("rank 0 on n0; rank 1 on n1 (off at 4 of 4 checksummed steps)")


def test_a_replay_mismatch_is_named() -> None:
    docs = healthy(2, 1, H100)
    docs[0]["replay"] = {"steps": 5, "match": False, "first_mismatch_step": 3}
    judgement = evaluate_certify(gang(docs, 1))
    assert reasons(judgement) == [
        "replay mismatch on rank 0 (n0, GPU 0, 00000000:18:00.0) at step 3: re-running the "
        "first 5 steps from the same seed gave different losses"
    ]
    assert judgement.host_results["n0"][0].status == "fail"


# --- stragglers ----------------------------------------------------------------------------------


def test_a_rank_12_percent_slow_is_a_straggler() -> None:
    docs = healthy(4, 2)
    docs[3]["local_s"] = {"p50": LOCAL_S * 1.12, "p99": 0.02, "mean": 0.012}
    judgement = evaluate_certify(gang(docs, 2))
    assert reasons(judgement) == [
        "straggler: rank 3 on n1 median local step time 11.2 ms, 12% above the median of all "
        "ranks (10 ms)"
    ]
    ranks = cert(judgement)["certificate"]["ranks"]
    assert [r["straggler"] for r in ranks] == [False, False, False, True]
    # A looser limit lets the same rank through: 12 % scores below the MAD rule's 3.5.
    loose = evaluate_certify(gang(docs, 2, expect={"certify_max_straggler": 0.2}))
    assert cert(loose)["status"] == "pass"


def test_no_false_straggler_from_3_percent_noise_across_8_ranks() -> None:
    noise = random.Random(7)
    for _ in range(50):
        docs = healthy(8, 8)
        for doc in docs:
            doc["local_s"] = {"p50": LOCAL_S * noise.uniform(0.97, 1.03), "p99": 0.02, "mean": 0}
        assert reasons(evaluate_certify(gang(docs, 8))) == []


def test_a_tiny_step_needs_the_absolute_floor_too() -> None:
    docs = healthy(2, 1)
    docs[1]["local_s"] = {"p50": 0.0015, "p99": 0.002, "mean": 0.0015}
    docs[0]["local_s"] = {"p50": 0.001, "p99": 0.002, "mean": 0.001}
    # 20 % above the median, but 0.25 ms: scheduler noise on a CPU run.
    assert MIN_EXCESS_S > 0.00025
    assert reasons(evaluate_certify(gang(docs, 1))) == []


# --- throughput ----------------------------------------------------------------------------------


def test_mfu_is_judged_on_h100_against_the_dense_bf16_peak() -> None:
    docs = healthy(2, 1, H100)
    judgement = evaluate_certify(gang(docs, 1))
    assert cert(judgement)["metrics"]["mfu"] == pytest.approx(80_000 * 6.4e9 / 989.5e12)
    assert cert(judgement)["certificate"]["thresholds"]["min_mfu"] == 0.30
    assert cert(judgement)["status"] == "pass"
    for doc in docs:
        doc["samples_per_s"] = 20_000.0
    [reason] = reasons(evaluate_certify(gang(docs, 1)))
    assert reason == (
        "throughput below expectation: MFU 0.13 < 0.3 (40,000 samples/s x 6.4 GFLOP per sample, "
        "against a dense bf16 peak of 1,979 TFLOP/s)"
    )


def test_mfu_is_not_judged_on_cpu_but_samples_per_s_is() -> None:
    judgement = evaluate_certify(gang(healthy(2, 1), 1))
    assert cert(judgement)["metrics"]["mfu"] is None
    assert cert(judgement)["certificate"]["thresholds"]["min_mfu"] is None
    assert cert(judgement)["status"] == "pass"
    slow = evaluate_certify(gang(healthy(2, 1), 1, expect={"certify_min_samples_per_s": 5000}))
    assert reasons(slow) == ["throughput below expectation: 4,000 samples/s < 5,000"]


# --- failures ------------------------------------------------------------------------------------


def test_a_node_that_died_is_named_with_its_ranks() -> None:
    docs = [rank_doc(0, 2, "n0"), {"rank": 1, "error": "RuntimeError: NCCL timeout"}]
    run = gang(docs, 2, error="node n1 died (exit 137)", failed=("n1",), nodes=2)
    judgement = evaluate_certify(run)
    item = cert(judgement)
    assert (item["status"], item["observed"]) == ("fail", "not certified")
    assert item["message"].startswith("not certified: job failed on n1: node n1 died (exit 137)")
    assert reasons(judgement)[:3] == [
        "job failed on n1: node n1 died (exit 137)",
        "node n1: ranks 2, 3 wrote no result",
        "rank 1 on n0 failed: RuntimeError: NCCL timeout",
    ]
    [node] = judgement.host_results["n1"]
    assert (node.id, node.status) == ("certify.node", "fail")
    assert "ranks 2, 3 wrote no result" in node.message
    assert [(r.id, r.status) for r in judgement.host_results["n0"]] == [
        ("certify.rank", "error"),
        ("certify.rank", "pass"),
    ]


def test_a_group_that_never_ran_is_an_error() -> None:
    unreachable = {1: HostError("unreachable", "ssh: connect to host 10.0.0.1: timed out")}
    run = gang([], 1, error="node n1 could not start", failed=("n1",), nodes=2,
               node_errors=unreachable, launched=False)  # fmt: skip
    judgement = evaluate_certify(run)
    item = cert(judgement)
    assert (item["status"], item["observed"]) == ("error", "not certified")
    assert reasons(judgement)[2] == (
        "node n1: unreachable: ssh: connect to host 10.0.0.1: timed out; rank 1 wrote no result"
    )
    assert judgement.host_results["n1"][0].status == "error"


# --- the statistics ------------------------------------------------------------------------------


def test_stats() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile([1.0, 2.0], 99) == pytest.approx(1.99)
    # Identical values: the MAD floor keeps microsecond noise from scoring.
    assert high_outliers([1.0] * 7 + [1.001]) == []
    assert high_outliers([1.0] * 7 + [1.2]) == [7]


def test_loss_curve_keeps_first_and_last_within_100_points() -> None:
    curve = loss_curve([float(i) for i in range(1000)])
    assert len(curve) == 100
    assert curve[0] == [1, 0.0] and curve[-1] == [1000, 999.0]
