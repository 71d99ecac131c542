"""The certify worker for real: two CPU ranks (gloo) under torchrun, started by the launcher's
run_workers as the gang task starts it, with the quick CPU defaults.

Each torchrun costs ~10 s on a small machine (two processes importing torch), so the module
runs two: a healthy run and a bit flip, whose checksums are compared step by step. The slow
and dying ranks are proven end to end, through dcctl certify across two sshd nodes
(tests/integration/test_gang_ssh.py).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

from dcctl.node.bench.certify import WORKER_MODULE, checksum_steps, defaults
from dcctl.node.bench.faults import parse_fault
from dcctl.node.bench.launch import WorkerRun, run_workers
from dcctl.node.payload import parse_progress_line

# Not importorskip: importing torch into the test process would break the tests proving that
# `check` never imports it.
pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="torch is not installed here (pip install torch==2.13.0, the CPU build)",
)

JOB_TIMEOUT_S = 120.0
DOC_KEYS = {
    "rank",
    "local_rank",
    "node_rank",
    "world_size",
    "hostname",
    "device",
    "backend",
    "gpu",
    "versions",
    "model",
    "seed",
    "steps",
    "loss_target",
    "losses",
    "global_losses",
    "timing_warmup_steps",
    "step_s",
    "local_s",
    "samples_per_s",
    "checksums",
    "replay",
    "fault",
}
# Shorter runs for the faults: what they test shows within a few dozen steps.
SHORT = {"steps": 60, "warmup_steps": 6, "checksum_every": 10, "replay_steps": 10}


def _torchrun(params: dict[str, Any]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        WORKER_MODULE,
        json.dumps(params, sort_keys=True, separators=(",", ":")),
    ]


def _certify(**overrides: Any) -> tuple[WorkerRun, float]:
    params = {**defaults("cpu", quick=True), **overrides}
    began = time.monotonic()
    run = run_workers(_torchrun, params, time.monotonic() + JOB_TIMEOUT_S)
    return run, time.monotonic() - began


def _docs(run: WorkerRun) -> list[dict[str, Any]]:
    docs = sorted(run.rank_docs, key=lambda doc: doc["rank"])
    assert [doc["rank"] for doc in docs] == [0, 1], run.stderr_tail
    for doc in docs:
        assert "error" not in doc, doc
    return docs


def _progress(out: str) -> list[dict[str, Any]]:
    lines = [parse_progress_line(line) for line in out.splitlines() if line.strip()]
    assert all(line is not None for line in lines), out
    return [line for line in lines if line is not None]


def test_a_healthy_run_trains_identical_replicas(capsys: pytest.CaptureFixture[str]) -> None:
    quick = defaults("cpu", quick=True)
    run, _ = _certify()
    assert run.error(2, "certify worker") is None, run.stderr_tail
    zero, one = _docs(run)
    for rank, doc in enumerate((zero, one)):
        assert set(doc) == DOC_KEYS
        assert (doc["local_rank"], doc["node_rank"], doc["world_size"]) == (rank, 0, 2)
        assert (doc["device"], doc["backend"], doc["gpu"]) == ("cpu", "gloo", None)
        assert doc["versions"]["nccl"] is None and doc["versions"]["torch"]
        assert doc["replay"] == {
            "steps": quick["replay_steps"],
            "match": True,
            "first_mismatch_step": None,
        }
        assert len(doc["losses"]) == quick["steps"] and doc["fault"] is None
        assert doc["timing_warmup_steps"] == 5
        assert 0 < doc["local_s"]["p50"] < doc["step_s"]["p50"] <= doc["step_s"]["p99"]
        assert doc["samples_per_s"] == pytest.approx(quick["batch"] / doc["step_s"]["mean"])
    model = zero["model"]
    assert model == one["model"]
    assert (model["hidden"], model["layers"], model["batch_per_rank"]) == (128, 4, 128)
    assert model["flops_per_sample"] == pytest.approx(6 * model["params"], rel=0.02)

    # Replicas agree bit for bit at every checksum; each rank learned from its own batches.
    steps = [mark["step"] for mark in zero["checksums"]]
    assert steps == checksum_steps(quick["steps"], quick["checksum_every"])
    assert zero["checksums"] == one["checksums"]
    assert len({mark["value"] for mark in zero["checksums"]}) == len(steps)
    assert zero["losses"] != one["losses"]
    assert zero["global_losses"] == one["global_losses"]
    mean = [(a + b) / 2 for a, b in zip(zero["losses"], one["losses"], strict=True)]
    assert zero["global_losses"] == pytest.approx(mean, rel=1e-6)

    # The loss starts near 1 (targets of unit variance, head at zero) and ends below target.
    losses = zero["global_losses"]
    assert 0.7 < losses[0] < 1.3
    tenth = len(losses) // 10
    assert sum(losses[-tenth:]) * 3 < sum(losses[:tenth])
    assert losses[-1] <= zero["loss_target"] == quick["loss_target"]

    # One joined line (one node), then rank 0's progress every steps // 50 steps.
    progress = _progress(capsys.readouterr().out)
    assert progress[0] == {"phase": "joined", "node_rank": 0}
    certify = progress[1:]
    every = quick["steps"] // 50
    assert [line["step"] for line in certify] == list(range(every, quick["steps"] + 1, every))
    for line in certify:
        assert line["phase"] == "certify" and line["of"] == quick["steps"]
        assert line["loss"] == zero["losses"][line["step"] - 1]
        assert line["samples_per_s"] > 0


def test_a_flipped_bit_shows_in_that_ranks_checksums_from_its_step() -> None:
    flip_step = 25
    fault = parse_fault(f"bitflip:rank=1,step={flip_step}")
    run, _ = _certify(**SHORT, fault=fault)
    zero, one = _docs(run)
    assert (zero["fault"], one["fault"]) == (None, fault)
    pairs = zip(zero["checksums"], one["checksums"], strict=True)
    for mine, theirs in pairs:
        assert mine["step"] == theirs["step"]
        same = mine["value"] == theirs["value"]
        assert same == (mine["step"] < flip_step), (mine, theirs)
    # The replay (10 steps) ends before the flip: nothing to see there.
    assert zero["replay"]["match"] and one["replay"]["match"]
