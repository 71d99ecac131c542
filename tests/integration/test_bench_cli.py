"""`dcctl bench` end to end: real torch (CPU GEMM, gloo allreduce over 2 processes) and real fio,
on this machine through the local transport and on loopback sshd hosts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cli_runner import load_schema, run_dcctl
from sshlab import NODE_PYTHON, write_inventory

# A bench run on 2 cores takes tens of seconds; the node-side budgets are minutes.
BENCH_TIMEOUT_S = 600

torch_missing = pytest.mark.skipif(
    __import__("importlib").util.find_spec("torch") is None,
    reason="torch is not installed here (pip install torch==2.13.0, the CPU build)",
)


def results_of(host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {result["id"]: result for result in host["results"]}


@torch_missing
def test_bench_all_quick_on_this_machine(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      connection: local\n"
        f"      python: {sys.executable}\n      scratch_dir: {scratch}\n"
    )
    result = run_dcctl(
        ["-i", str(inventory), "--json", "--state-dir", str(tmp_path / "s"), "bench", "all",
         "--quick"],
        home=tmp_path, timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip
    assert result.code == 0, result.stderr[-3000:]
    document = result.json()
    jsonschema.validate(document, load_schema())
    assert document["command"] == "bench"
    (host,) = document["hosts"]
    found = results_of(host)
    assert found["bench.preflight"]["status"] == "pass"
    gemm = found["bench.gemm.fp32"]
    assert gemm["status"] == "pass", gemm
    assert gemm["metrics"]["tflops"] > 0
    assert found["bench.gemm.checksum"]["status"] == "skip"  # one CPU: nothing to compare with
    assert found["bench.gemm.reference"]["status"] == "pass"
    allreduce = found["bench.allreduce"]
    assert allreduce["status"] == "pass", allreduce
    # Two gloo ranks: busbw = algbw * 2(n-1)/n = algbw.
    assert allreduce["metrics"]["busbw_gbs"] == pytest.approx(allreduce["metrics"]["algbw_gbs"])
    for job in ("seqread", "seqwrite", "randread", "randwrite"):
        fio = found[f"bench.fio.{job}"]
        assert fio["status"] in ("pass", "warn"), fio  # warn: ran buffered (tmpfs /tmp)
        assert fio["metrics"]["mb_s"] > 0
    # fio wrote only inside scratch_dir and left nothing there.
    assert not [path for path in scratch.rglob("*") if not path.is_dir()]


@torch_missing
def test_bench_over_ssh_runs_on_one_host_and_names_missing_torch_on_the_other(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    """node1's python has torch; node2's (the system python) has none: node2's torch
    benchmarks are one clear error naming its interpreter and the install command, its fio
    still runs, and node1's figures all land."""
    with_torch = {**healthy_hosts[0], "python": sys.executable,
                  "scratch_dir": str(tmp_path / "scratch1")}  # fmt: skip
    without = {**healthy_hosts[1], "python": NODE_PYTHON, "scratch_dir": str(tmp_path / "s2")}
    inventory = write_inventory(tmp_path / "inv.yaml", [with_torch, without])
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--json", "bench", "all",
         "--quick"],
        home=tmp_path / "home", timeout=BENCH_TIMEOUT_S,
    )  # fmt: skip
    document = result.json()
    jsonschema.validate(document, load_schema())
    hosts = {host["name"]: host for host in document["hosts"]}
    assert hosts[with_torch["name"]]["status"] == "passed", hosts[with_torch["name"]]
    ran = results_of(hosts[with_torch["name"]])
    assert ran["bench.gemm.fp32"]["metrics"]["tflops"] > 0
    assert ran["bench.allreduce"]["status"] == "pass"
    broken = hosts[without["name"]]
    assert results_of(broken)["bench.fio.seqread"]["metrics"]["mb_s"] > 0
    assert broken["status"] == "error"
    preflight = results_of(broken)["bench.preflight"]
    assert preflight["status"] == "error"
    assert f"torch cannot be imported by {NODE_PYTHON}" in preflight["message"]
    assert f"{NODE_PYTHON} -m pip install torch" in preflight["message"]
    assert "Traceback" not in preflight["message"]
    assert result.code == 3, result.stderr[-2000:]
