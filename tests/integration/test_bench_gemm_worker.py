"""The GEMM worker run for real with torch on the CPU, started the way the launcher starts it
(dcctl.node.bench.gemm.gemm_worker_argv, PYTHONPATH at the runtime root): one process, and
torchrun with one process per "GPU" (every rank on the CPU here), then its rank files read back
through summarize_gemm and the evaluator.

Each run is started once per module and shared by the tests that read it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcctl.evaluate.bench_gemm import evaluate_gemm
from dcctl.node.bench.gemm import CORRUPT_RANK_ENV, gemm_worker_argv, summarize_gemm
from dcctl.node.payload import parse_progress_line

# torch is imported by the child processes only: importing it here would slow every collection.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch is not installed"
)

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 180
SIZE = 256


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    docs: list[dict[str, Any]]


def run_worker(
    out_dir: Path, processes: int, env: dict[str, str] | None = None, **params: Any
) -> Run:
    wanted = {
        "out_dir": str(out_dir),
        "device": "cpu",
        "dtypes": ["fp32", "bf16", "fp8"],
        "m": SIZE,
        "n": SIZE,
        "k": SIZE,
        "min_time_s": 0.2,
        "warmup": 2,
        "seed": 7,
        **params,
    }
    argv = gemm_worker_argv(sys.executable, processes, wanted)
    # The hook only where a test asks for it, never inherited from the shell running pytest.
    inherited = {k: v for k, v in os.environ.items() if k != CORRUPT_RANK_ENV}
    environment = {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}
    done = subprocess.run(
        argv, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    docs = [json.loads(path.read_text()) for path in sorted(out_dir.glob("rank-*.json"))]
    return Run(done.returncode, done.stdout, done.stderr, docs)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("gemm-single")
    return run_worker(out, 1, duration_s=0.6, window_s=0.2)


@pytest.fixture(scope="module")
def torchrun(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_worker(tmp_path_factory.mktemp("gemm-torchrun"), 2)


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    # Three ranks, so two agree and the odd one out can be named.
    out = tmp_path_factory.mktemp("gemm-corrupt")
    return run_worker(out, 3, env={CORRUPT_RANK_ENV: "1"}, dtypes=["fp32"])


def fp32(doc: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in doc["results"] if r["dtype"] == "fp32")


def check_figures(doc: dict[str, Any], rank: int) -> None:
    assert doc["rank"] == rank
    assert doc["device"] == "cpu"
    assert doc["name"]
    assert doc["pci_bus_id"] is None
    result = fp32(doc)
    assert (result["m"], result["n"], result["k"]) == (SIZE, SIZE, SIZE)
    assert result["tflops"] > 0
    assert result["tflops_min"] <= result["tflops"] <= result["tflops_max"]
    assert len(result["times_ms"]) >= 5
    # At least min_time_s of timed work.
    assert sum(result["times_ms"]) >= 200
    assert result["iterations"] >= len(result["times_ms"])
    assert result["ref_ok"] is True
    assert result["ref_max_rel_err"] < result["tolerance"] == 1e-4
    assert len(result["checksum"]) == 64


def progress_lines(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    parsed = [parse_progress_line(line) for line in lines]
    # Nothing but progress lines on stdout.
    assert all(p is not None for p in parsed), lines
    return [p for p in parsed if p is not None]


def test_single_process_writes_its_rank_file(single: Run) -> None:
    assert single.returncode == 0, single.stderr
    [doc] = single.docs
    check_figures(doc, 0)
    skipped = {r["dtype"]: r["skipped"] for r in doc["results"] if "skipped" in r}
    assert skipped == {
        "bf16": "on CPU only fp32 is measured",
        "fp8": "on CPU only fp32 is measured",
    }


def test_single_process_soaks_the_first_dtype_it_ran(single: Run) -> None:
    soak = single.docs[0]["soak"]
    assert soak["dtype"] == "fp32"
    assert soak["window_s"] == 0.2
    assert len(soak["windows"]) >= 2
    assert all(w["tflops"] > 0 for w in soak["windows"])
    assert [w["t_s"] for w in soak["windows"]] == sorted(w["t_s"] for w in soak["windows"])
    assert soak["checksum"] == fp32(single.docs[0])["checksum"]


def test_single_process_progress_on_stdout_only(single: Run) -> None:
    progress = progress_lines(single.stdout)
    starts = [p for p in progress if p.get("phase") is None]
    assert [p["dtype"] for p in starts] == ["fp32", "bf16", "fp8"]
    assert all(p["bench"] == "gemm" and p["rank"] == 0 and p["of"] == 4 for p in starts)
    assert any(p.get("phase") == "soak" and "tflops" in p for p in progress)


def test_torchrun_ranks_agree(torchrun: Run) -> None:
    assert torchrun.returncode == 0, torchrun.stderr
    assert [doc["rank"] for doc in torchrun.docs] == [0, 1]
    for rank, doc in enumerate(torchrun.docs):
        check_figures(doc, rank)
    assert fp32(torchrun.docs[0])["checksum"] == fp32(torchrun.docs[1])["checksum"]
    assert {p["rank"] for p in progress_lines(torchrun.stdout)} == {0, 1}


def test_torchrun_summary_and_verdict(torchrun: Run) -> None:
    section = summarize_gemm(torchrun.docs)
    assert section["checksum_mismatches"] == []
    assert section["reference_failures"] == []
    results = {r.id: r for r in evaluate_gemm(section)}
    assert results["bench.gemm.fp32"].status == "pass"
    assert "on CPU" in results["bench.gemm.fp32"].message
    assert results["bench.gemm.checksum"].status == "pass"
    assert results["bench.gemm.reference"].status == "pass"
    assert results["bench.gemm.bf16"].status == "skip"


def test_corrupted_rank_is_caught_and_named(corrupted: Run) -> None:
    assert corrupted.returncode == 0, corrupted.stderr
    sums = [fp32(doc)["checksum"] for doc in corrupted.docs]
    assert sums[0] == sums[2] != sums[1]
    section = summarize_gemm(corrupted.docs)
    [mismatch] = section["checksum_mismatches"]
    assert (mismatch["rank"], mismatch["dtype"], mismatch["majority"]) == (1, "fp32", sums[0])
    [failed] = [r for r in evaluate_gemm(section) if r.id == "bench.gemm.checksum"]
    assert failed.status == "fail"
    assert failed.message.startswith("CPU rank 1: fp32 result differs bitwise")


def test_bad_params_leave_an_error_file(tmp_path: Path) -> None:
    run = run_worker(tmp_path, 1, dtypes=["int4"])
    assert run.returncode == 1
    assert run.stdout == ""
    [doc] = run.docs
    assert doc["rank"] == 0
    assert doc["error"].startswith("BadParams: dtypes must be")


def test_cuda_without_a_gpu_is_the_rank_error(tmp_path: Path) -> None:
    run = run_worker(tmp_path, 1, device="cuda", dtypes=["bf16"])
    if run.returncode == 0:
        pytest.skip("this machine has a GPU")
    assert run.returncode == 1
    [doc] = run.docs
    assert doc == {"rank": 0, "error": doc["error"]}
    assert "sees no GPU" in doc["error"]


# The GPU dtypes' operand setup, products and fp64 check, run on the CPU (torch multiplies
# bf16, fp16 and, through _scaled_mm, fp8 there too): each lands well inside its tolerance,
# and an fp32 result computed from tf32-rounded inputs does not pass the fp32 tolerance.
DTYPE_PATHS = """
import json, torch
from dcctl.node.bench.gemm_worker import TOLERANCES, Gemm
generator = torch.Generator().manual_seed(3)
a, b = (torch.randn(256, 256, generator=generator) for _ in range(2))
errors = {}
for dtype in ("fp32", "bf16", "fp16", "fp8"):
    gemm = Gemm(torch, dtype, a, b)
    gemm.op()
    errors[dtype] = gemm.reference_error(64)
tf32 = Gemm(torch, "fp32", a, b)
rounded = [(x.view(torch.int32) + 0x1000 & ~0x1FFF).view(torch.float32) for x in (a, b)]
torch.matmul(*rounded, out=tf32.out)
errors["tf32-as-fp32"] = tf32.reference_error(64)
print(json.dumps({"errors": errors, "tolerances": TOLERANCES}))
"""


def test_every_dtype_path_against_the_fp64_reference() -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", DTYPE_PATHS],
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=True,
    )
    found = json.loads(done.stdout)
    errors, tolerances = found["errors"], found["tolerances"]
    for dtype in ("fp32", "bf16", "fp16", "fp8"):
        assert 0 < errors[dtype] < tolerances[dtype] / 4, (dtype, errors[dtype])
    assert errors["tf32-as-fp32"] > tolerances["fp32"]
