"""The certify worker's parameters and the DCCTL_FAULT spec: pure, no torch."""

from __future__ import annotations

import itertools
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dcctl.node.bench.certify import (
    KEYS,
    MIN_LR_RATIO,
    BadParams,
    batch_seed,
    checksum_steps,
    defaults,
    flops_per_sample,
    lr_at,
    percentile,
    progress_every,
    summary,
    timing_skip,
    worker_params,
)
from dcctl.node.bench.faults import FAULT_ENV, BadFault, check_fault, for_rank, parse_fault

ROOT = Path(__file__).resolve().parents[2]
PYTHON_38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")


def fault(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "rank": None, "step": None, "ms": None, "host": None, **fields}


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("bitflip:rank=1,step=25", fault("bitflip", rank=1, step=25)),
        ("slow:rank=0,ms=30", fault("slow", rank=0, ms=30.0)),
        ("slow:ms=2.5,rank=3", fault("slow", rank=3, ms=2.5)),
        ("die:rank=7,step=1", fault("die", rank=7, step=1)),
        (
            "slow-link:host=gpu-node-03.example,ms=50",
            fault("slow-link", host="gpu-node-03.example", ms=50.0),
        ),
        (" slow : rank = 2 , ms = 1e1 ", fault("slow", rank=2, ms=10.0)),
    ],
)
def test_parse_fault_reads_each_kind(spec: str, expected: dict[str, Any]) -> None:
    assert parse_fault(spec) == expected
    # What the controller sends in the params comes back unchanged.
    assert check_fault(json.loads(json.dumps(expected))) == expected


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("", "empty fault"),
        ("flip:rank=1,step=2", "unknown fault 'flip'"),
        ("bitflip", "bitflip needs rank and step"),
        ("bitflip:", "bitflip needs rank and step"),
        ("bitflip:rank=1", "bitflip needs step"),
        ("bitflip:rank=1,ms=3", "bitflip takes rank and step, not 'ms'"),
        ("die:rank=1,step=2,step=3", "step given twice"),
        ("die:rank=1;step=2", "rank must be an integer >= 0, got '1;step=2'"),
        ("die:rank=1,,step=2", "'' is not key=value"),
        ("die:rank=-1,step=2", "rank must be an integer >= 0, got '-1'"),
        ("die:rank=1,step=0", "step must be an integer >= 1, got '0'"),
        ("die:rank=one,step=2", "rank must be an integer >= 0, got 'one'"),
        ("slow:rank=1,ms=0", "ms must be a number of milliseconds in (0, 60000], got '0'"),
        ("slow:rank=1,ms=nan", "ms must be a number of milliseconds in (0, 60000], got 'nan'"),
        ("slow:rank=1,ms=inf", "ms must be a number of milliseconds in (0, 60000], got 'inf'"),
        ("slow:rank=1,ms=fast", "ms must be a number of milliseconds in (0, 60000], got 'fast'"),
        ("slow-link:host=a b,ms=5", "host must be an inventory host name, got 'a b'"),
        ("slow-link:rank=1,ms=5", "slow-link takes host and ms, not 'rank'"),
    ],
)
def test_parse_fault_names_the_problem_in_one_line(spec: str, problem: str) -> None:
    with pytest.raises(BadFault) as caught:
        parse_fault(spec)
    message = str(caught.value)
    assert message.startswith(f"{FAULT_ENV}: {problem} (accepted: bitflip:rank=R,step=S | ")
    assert "slow-link:host=NAME,ms=M)" in message and "\n" not in message


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("slow:rank=1,ms=3", "a fault is an object, got str"),
        ({"kind": "melt"}, "unknown fault 'melt'"),
        ({**fault("die", rank=1, step=2), "why": 1}, "unknown fault keys: why"),
        (fault("die", rank=1, step=2, ms=3.0), "die takes rank and step, not 'ms'"),
        (fault("die", rank=1), "die needs step"),
        (fault("die", rank=True, step=2), "rank must be an integer, got True"),
        (fault("die", rank=1.0, step=2), "rank must be an integer, got 1.0"),
        (fault("slow", rank=1, ms="3"), "ms must be a number, got '3'"),
        (fault("slow", rank=1, ms=-3), "ms must be a number of milliseconds in (0, 60000]"),
        (fault("slow-link", host=7, ms=3), "host must be a string, got 7"),
        (fault("slow-link", host="a,b", ms=3), "host must be an inventory host name, got 'a,b'"),
    ],
)
def test_check_fault_refuses_what_the_spec_could_not_give(value: Any, problem: str) -> None:
    with pytest.raises(BadFault, match=r"^DCCTL_FAULT: " + problem.replace("(", r"\(")):
        check_fault(value)


def test_check_fault_takes_none_and_a_partial_dict() -> None:
    assert check_fault(None) is None
    # Keys a kind does not take may be left out instead of null; ms may be an integer.
    assert check_fault({"kind": "slow", "rank": 2, "ms": 5}) == fault("slow", rank=2, ms=5.0)


def test_for_rank_picks_the_named_rank_and_every_rank_for_a_host_fault() -> None:
    flip = parse_fault("bitflip:rank=1,step=3")
    assert [for_rank(flip, rank) for rank in range(3)] == [None, flip, None]
    link = parse_fault("slow-link:host=b,ms=5")
    assert [for_rank(link, rank) for rank in range(3)] == [link, link, link]
    assert for_rank(None, 0) is None


# --- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("quick", [True, False])
def test_defaults_are_valid_params(device: str, quick: bool) -> None:
    found = defaults(device, quick)
    assert set(found) == set(KEYS) - {"out_dir"}
    assert found["device"] == device and found["fault"] is None
    assert worker_params({**found, "out_dir": "/tmp"}) == {**found, "out_dir": "/tmp"}


def test_default_sizes() -> None:
    cpu, gpu = defaults("cpu", True), defaults("cuda", True)
    assert (cpu["hidden"], cpu["layers"], cpu["dtype"]) == (128, 4, "fp32")
    assert (gpu["hidden"], gpu["layers"], gpu["dtype"]) == (8192, 8, "bf16")
    # The same task everywhere, so a loss target means the same thing.
    for key in ("in_dim", "out_dim", "seed"):
        assert cpu[key] == gpu[key] == defaults("cpu", False)[key]
    assert defaults("cpu", False)["steps"] > cpu["steps"]
    assert defaults("cuda", False)["steps"] > gpu["steps"]


def test_worker_params_fill_in_the_full_run_defaults() -> None:
    params = worker_params({"out_dir": "/x", "device": "cpu", "steps": 300, "lr": 1})
    assert params == {**defaults("cpu", False), "out_dir": "/x", "steps": 300, "lr": 1.0}
    # Default warm-up and replay lengths shrink to a shorter run; given ones must fit.
    short = worker_params({"out_dir": "/x", "device": "cpu", "steps": 30, "replay_steps": 3})
    assert (short["warmup_steps"], short["replay_steps"]) == (30, 3)
    assert worker_params({"out_dir": "/x"})["device"] == "cuda"
    flip = parse_fault("bitflip:rank=0,step=2")
    assert worker_params({"out_dir": "/x", "fault": flip})["fault"] == flip


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ([], "params must be a JSON object, got list"),
        ({"out_dir": "/x", "hiden": 3, "zz": 1}, "unknown params: hiden, zz"),
        ({}, "out_dir must be a directory path, got None"),
        ({"out_dir": ""}, "out_dir must be a directory path, got ''"),
        ({"out_dir": "/x", "device": "tpu"}, "device must be one of cuda, cpu, got 'tpu'"),
        ({"out_dir": "/x", "dtype": "fp16"}, "dtype must be one of bf16, fp32, got 'fp16'"),
        ({"out_dir": "/x", "hidden": 0}, "hidden must be an integer >= 1, got 0"),
        ({"out_dir": "/x", "layers": 2.0}, "layers must be an integer >= 1, got 2.0"),
        ({"out_dir": "/x", "batch": True}, "batch must be an integer >= 1, got True"),
        ({"out_dir": "/x", "seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"out_dir": "/x", "lr": 0}, "lr must be positive and finite, got 0"),
        ({"out_dir": "/x", "lr": "1e-3"}, "lr must be a number, got '1e-3'"),
        ({"out_dir": "/x", "loss_target": math.inf}, "loss_target must be positive and finite"),
        ({"out_dir": "/x", "init_timeout_s": False}, "init_timeout_s must be a number, got False"),
        (
            {"out_dir": "/x", "steps": 10, "warmup_steps": 11},
            "warmup_steps (11) exceeds steps (10)",
        ),
        (
            {"out_dir": "/x", "steps": 10, "warmup_steps": 2, "replay_steps": 20},
            "replay_steps (20) exceeds steps (10)",
        ),
        (
            {"out_dir": "/x", "fault": "die:rank=1,step=2"},
            "fault: DCCTL_FAULT: a fault is an object",
        ),
        (
            {"out_dir": "/x", "fault": {"kind": "die", "rank": 1}},
            "fault: DCCTL_FAULT: die needs step",
        ),
        (
            {"out_dir": "/x", "steps": 10, "fault": {"kind": "bitflip", "rank": 0, "step": 11}},
            "fault: step 11 is after the last step (10)",
        ),
    ],
)
def test_worker_params_name_the_first_bad_key(raw: Any, problem: str) -> None:
    with pytest.raises(BadParams) as caught:
        worker_params(raw)
    assert str(caught.value).startswith(problem)


def test_defaults_refuse_an_unknown_device() -> None:
    with pytest.raises(BadParams, match="device must be one of cuda, cpu, got 'rocm'"):
        defaults("rocm", True)


# --- arithmetic ----------------------------------------------------------------------------


def test_lr_warms_up_linearly_then_decays_by_cosine_to_its_floor() -> None:
    lrs = [lr_at(step, 1.0, 10, 110) for step in range(1, 111)]
    assert lrs[:10] == pytest.approx([step / 10 for step in range(1, 11)])
    assert lrs[10] == pytest.approx(1.0 - (1.0 - MIN_LR_RATIO) * (1 - math.cos(math.pi / 100)) / 2)
    assert all(a > b for a, b in itertools.pairwise(lrs[9:]))
    assert lrs[-1] == pytest.approx(MIN_LR_RATIO)
    assert lrs[59] == pytest.approx((1.0 + MIN_LR_RATIO) / 2)  # halfway through the decay
    # No warm-up; and a run that is all warm-up.
    assert lr_at(1, 2.0, 0, 1) == pytest.approx(2.0 * MIN_LR_RATIO)
    assert lr_at(5, 2.0, 5, 5) == 2.0


def test_flops_per_sample_counts_six_per_matmul_weight() -> None:
    weights = 32 * 8192 + 8 * 2 * 8192 * 8192 + 8192 * 8
    assert flops_per_sample(8192, 8, 32, 8) == 6.0 * weights
    assert flops_per_sample(8192, 8, 32, 8) == pytest.approx(6.44e9, rel=0.01)


def test_batch_seeds_differ_by_rank_and_step_and_never_change() -> None:
    seeds = {batch_seed(1, rank, step) for rank in range(64) for step in range(200)}
    assert len(seeds) == 64 * 200
    assert all(0 <= seed < 2**63 for seed in seeds)
    # Pinned: a different seed is a different task, and the loss targets were calibrated on it.
    assert batch_seed(1, 0, 0) == 0x7DB3_D309_1C67_B2FE
    assert batch_seed(1, 1, 5) == 0x51A4_BE6F_9135_40D5


def test_schedules_of_checksums_progress_and_timing() -> None:
    assert checksum_steps(200, 20) == [20, 40, 60, 80, 100, 120, 140, 160, 180, 200]
    assert checksum_steps(45, 20) == [20, 40, 45]
    assert checksum_steps(5, 20) == [5]
    assert progress_every(200) == 4 and progress_every(10) == 1
    assert timing_skip(200) == 5 and timing_skip(4) == 2 and timing_skip(1) == 0


def test_percentiles_interpolate_like_numpy() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile([7.0], 99) == 7.0
    assert summary([1.0, 2.0, 3.0, 10.0]) == {"p50": 2.5, "p99": pytest.approx(9.79), "mean": 4.0}


# --- the node's oldest python --------------------------------------------------------------


def test_params_and_faults_run_on_python_38_without_torch() -> None:
    if not PYTHON_38.is_file():
        pytest.skip(f"{PYTHON_38} not installed")
    # Every module a gang job runs on the node: the task, the workers' module level (their
    # NamedTuples, type aliases and imports), the parameters.
    code = (
        "import json, sys; import dcctl.node.bench.certify_worker, dcctl.node.bench.gang; "
        "import dcctl.node.bench.allreduce_worker, dcctl.node.bench.gemm_worker; "
        "from dcctl.node.bench import certify, faults; "
        "p = certify.worker_params({'out_dir': '/x', 'device': 'cpu', "
        "'fault': faults.parse_fault('slow:rank=1,ms=3')}); "
        "assert 'torch' not in sys.modules; print(json.dumps(p, sort_keys=True))"
    )
    ran = subprocess.run(
        [str(PYTHON_38), "-S", "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stderr
    expected = worker_params(
        {"out_dir": "/x", "device": "cpu", "fault": parse_fault("slow:rank=1,ms=3")}
    )
    assert json.loads(ran.stdout) == expected
