"""The allreduce worker for real: torch's gloo backend across two CPU processes, started from
the shipped node runtime (the zip dcctl uploads, unpacked) as the launcher starts it.

Each torch process takes seconds to import torch on a small machine, so each test starts one
job: the clean sweep through torchrun's `-m` module form (the launcher's command), the
corrupted one as two ranks started by hand with torchrun's environment.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dcctl.evaluate.bench_allreduce import evaluate_allreduce
from dcctl.fleet.runtime import build_runtime
from dcctl.node.bench.allreduce import (
    CORRUPT_RANK_ENV,
    WORKER_MODULE,
    allreduce_worker_argv,
    bus_bandwidth,
    summarize_allreduce,
)
from dcctl.node.payload import parse_progress_line

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="torch is not installed (pip install .[bench])",
)

MIB = 1024**2
JOB_TIMEOUT_S = 120
SMALL = {"device": "cpu", "min_bytes": 1024, "max_bytes": MIB, "min_time_s": 0.0}


@pytest.fixture(scope="module")
def runtime_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The node runtime as a node unpacks it: dcctl.node only, not this checkout."""
    root = tmp_path_factory.mktemp("runtime")
    zipfile.ZipFile(io.BytesIO(build_runtime().archive)).extractall(root)
    return root


def _env(runtime_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != CORRUPT_RANK_ENV}
    return {**env, "PYTHONPATH": str(runtime_root), **extra}


def _docs(out_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(out_dir.glob("rank-*.json"))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_rank(runtime_root: Path, rank: int, port: int, params: str, **env: str) -> Any:
    """One rank with the environment torchrun gives it, without torchrun's own process."""
    torchrun_env = {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": "2",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    return subprocess.Popen(
        [sys.executable, "-m", WORKER_MODULE, params],
        cwd=runtime_root,
        env=_env(runtime_root, **torchrun_env, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_clean_sweep_through_torchrun(runtime_root: Path, tmp_path: Path) -> None:
    argv = allreduce_worker_argv(sys.executable, 2, {"out_dir": str(tmp_path), **SMALL})
    proc = subprocess.run(
        argv,
        cwd=runtime_root,
        env=_env(runtime_root),
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Nothing on stdout but rank 0's progress, one line per size.
    lines = proc.stdout.splitlines()
    progress = [parse_progress_line(line) for line in lines]
    sizes = [1024 * 2**i for i in range(11)]
    assert progress == [
        {"bench": "allreduce", "bytes": size, "step": step, "of": 11}
        for step, size in enumerate(sizes, start=1)
    ]

    docs = _docs(tmp_path)
    assert [doc["rank"] for doc in docs] == [0, 1]
    zero, one = docs
    assert (zero["world_size"], zero["backend"], zero["device"]) == (2, "gloo", "cpu")
    assert (zero["dtype"], zero["in_place"], zero["versions"]["nccl"]) == ("float32", True, None)
    assert [row["bytes"] for row in zero["sizes"]] == sizes
    for row in zero["sizes"]:
        assert row["count"] * 4 == row["bytes"]
        assert row["wrong"] == 0 and row["iterations"] >= 20 and row["time_us"] > 0
        assert row["algbw_gbs"] == pytest.approx(row["bytes"] / 1e9 / (row["time_us"] * 1e-6))
        assert row["busbw_gbs"] == bus_bandwidth(row["algbw_gbs"], 2) == row["algbw_gbs"]
    assert one == {"rank": 1, "wrong_total": 0, "wrong_local": 0, "local_rank": 1, "node_rank": 0,
                   "hostname": socket.gethostname()}  # fmt: skip

    section = summarize_allreduce(docs, expected_ranks=2)
    assert section["errors"] == [] and section["bytes"] == MIB
    (result,) = evaluate_allreduce(section, None)
    assert result.status == "pass", result.message


def test_a_corrupted_rank_makes_every_size_wrong(runtime_root: Path, tmp_path: Path) -> None:
    params = json.dumps({"out_dir": str(tmp_path), **SMALL, "max_bytes": 4096, "dtype": "bfloat16"})
    port = _free_port()
    ranks = [_start_rank(runtime_root, r, port, params, **{CORRUPT_RANK_ENV: "1"}) for r in (0, 1)]
    outputs = [rank.communicate(timeout=JOB_TIMEOUT_S) for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0], [err[-2000:] for _, err in outputs]

    docs = _docs(tmp_path)
    # One element of rank 1's input is off by one, so each rank's result has one wrong element.
    assert [row["wrong"] for row in docs[0]["sizes"]] == [2, 2, 2]
    assert [doc["wrong_local"] for doc in docs] == [3, 3]
    assert [doc["wrong_total"] for doc in docs] == [6, 6]

    section = summarize_allreduce(docs, expected_ranks=2)
    (result,) = evaluate_allreduce(section, None)
    assert result.status == "fail"
    assert "6 wrong elements at 1 KiB, 2 KiB, 4 KiB" in result.message


def test_bad_params_are_each_ranks_error(runtime_root: Path, tmp_path: Path) -> None:
    params = json.dumps({"out_dir": str(tmp_path), "device": "cpu", "iterations": 0})
    rank = _start_rank(runtime_root, 1, _free_port(), params)
    stdout, stderr = rank.communicate(timeout=JOB_TIMEOUT_S)
    assert rank.returncode == 1 and stdout == ""
    error = "BadParams: iterations must be an integer >= 1, got 0"
    assert _docs(tmp_path) == [{"rank": 1, "error": error}]
    assert error in stderr

    (result,) = evaluate_allreduce(summarize_allreduce(_docs(tmp_path), expected_ranks=2), None)
    assert result.status == "error"
    assert f"rank 0: wrote no result (killed, or never started); rank 1: {error}" in result.message
