"""Run documents for the report tests, built from the real evaluators: recorded H100 node trees
judged by the real checks (a healthy node, a PCIe x8 fault, a warning), the GEMM worker fixture,
fio and allreduce figures through their real judges, an unreachable host, and cluster results
(certify, allreduce pairs) shaped as dcctl writes them. A two-step playbook run: `preflight`
(check) then `perf` (bench).

`acceptance_run()` is built once per test session (about a second: three node trees are
collected) and handed out as a fresh copy, so a test may change its copy.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from sysroots import FIXTURES, H100_EXPECT, build_sysroot

from dcctl.evaluate.bench_allreduce import evaluate_allreduce
from dcctl.evaluate.bench_fio import evaluate_fio
from dcctl.evaluate.bench_gemm import GemmLimits, evaluate_gemm
from dcctl.evaluate.node import evaluate_node
from dcctl.evaluate.result import Result
from dcctl.node.bench.gemm import summarize_gemm
from dcctl.node.facts import collect_facts

PARAMS = {"scratch_dir": "/var/tmp/dcctl", "xid_window_h": 24, "dcgm_level": 1}
STARTED, FINISHED = "2026-11-28T13:35:03Z", "2026-11-28T13:41:10Z"
# The hosts of acceptance_run(), with the fault each node tree carries.
NODES = {"gpu001": None, "gpu002": "pcie-x8", "gpu003": "mlx5-pcie-limited"}
UNREACHABLE = "gpu004"


def _json(results: list[Result], step: str) -> list[dict[str, Any]]:
    return [{**result.to_json(), "step": step} for result in results]


def _node(tmp: Path, fault: str | None) -> tuple[dict[str, Any], list[Result]]:
    before = os.environ.get("DCCTL_SYSROOT")
    os.environ["DCCTL_SYSROOT"] = str(build_sysroot(tmp / (fault or "healthy"), fault))
    try:
        facts = collect_facts(PARAMS)
    finally:
        if before is None:
            os.environ.pop("DCCTL_SYSROOT", None)
        else:
            os.environ["DCCTL_SYSROOT"] = before
    return facts, evaluate_node(facts, H100_EXPECT)


def gemm_results() -> list[Result]:
    ranks = sorted((FIXTURES / "bench" / "gemm" / "h100x8").glob("rank-*.json"))
    return evaluate_gemm(summarize_gemm([json.loads(p.read_text()) for p in ranks]), GemmLimits())


def allreduce_results(busbw_gbs: float) -> list[Result]:
    largest = 8 << 30
    section = {
        "ranks": 8, "backend": "nccl", "bytes": largest, "busbw_gbs": busbw_gbs,
        "algbw_gbs": busbw_gbs * 8 / 14, "wrong_total": 0, "errors": [],
        "sizes": [{"bytes": size, "time_us": 100.0, "algbw_gbs": 1.0, "busbw_gbs": 1.75,
                   "wrong": 0} for size in (1 << 20, largest)],
    }  # fmt: skip
    return evaluate_allreduce(section, 360.0)


def fio_results(seqread_mb_s: float) -> list[Result]:
    jobs = [
        {"name": "seqread", "mb_s": seqread_mb_s, "iops": seqread_mb_s, "direct": True,
         "clat_us": {"p50": 900.0, "p99": 2100.0, "p99.9": 4000.0}},
        {"name": "randread", "mb_s": 410.0, "iops": 105000.0, "direct": True,
         "clat_us": {"p50": 120.0, "p99": 480.0, "p99.9": 900.0}},
    ]  # fmt: skip
    return evaluate_fio({"jobs": jobs}, {"min_seqread_mb_s": 3000.0})


def _step(name: str, command: str, status: str, counts: tuple[int, int, int]) -> dict[str, Any]:
    passed, failed, error = counts
    summary = {"hosts": sum(counts), "passed": passed, "failed": failed, "error": error}
    return {"name": name, "command": command, "status": status, "started_at": STARTED,
            "finished_at": FINISHED, "summary": summary, "on_fail": "continue",
            "skipped": False}  # fmt: skip


def _host_status(results: list[dict[str, Any]], error: Any) -> str:
    if any(result["status"] == "fail" for result in results):
        return "failed"
    return "error" if error is not None else "passed"


def _build(tmp: Path) -> dict[str, Any]:
    hosts: list[dict[str, Any]] = []
    for name, fault in NODES.items():
        facts, checks = _node(tmp, fault)
        results = _json(checks, "preflight")
        if name != "gpu003":  # gpu003 did not reach the bench step
            bench = gemm_results() + allreduce_results(380.0 if name == "gpu001" else 250.0)
            results += _json(bench + fio_results(6500.0), "perf")
        hosts.append({"name": name, "address": f"10.0.0.{len(hosts) + 1}",
                      "status": _host_status(results, None), "error": None,
                      "duration_s": 41.5, "facts": facts, "results": results})  # fmt: skip
    error = {"kind": "unreachable", "message": "ssh: connect to 10.0.0.4 port 22: No route to host"}
    hosts.append({"name": UNREACHABLE, "address": "10.0.0.4", "status": "error", "error": error,
                  "duration_s": 10.0, "facts": {}, "results": []})  # fmt: skip
    certify = {
        **Result("certify", "pass", "certified: 2 nodes, 16 ranks, loss 10.4 -> 3.9",
                 "certified", {"min_mfu": 0.3}, "bench",
                 metrics={"ranks": 16, "nodes": 2, "samples_per_s": 5120.0, "mfu": 0.41,
                          "step_p50_s": 0.21, "loss_initial": 10.4, "loss_final": 3.9}).to_json(),
        "step": "perf", "hosts": ["gpu001", "gpu002"],
        "certificate": {"verdict": "certified", "reasons": []},
    }  # fmt: skip
    pair = {
        **Result("cluster.allreduce.pair", "fail", "gpu001 + gpu002: busbw 21.0 GB/s, below 40",
                 21.0, {"min_busbw_gbs": 40.0}, "bench",
                 metrics={"busbw_gbs": 21.0, "algbw_gbs": 11.0, "bytes": 1 << 30,
                          "ranks": 2}).to_json(),
        "step": "perf", "hosts": ["gpu001", "gpu002"], "pass": 1,
    }  # fmt: skip
    statuses = [host["status"] for host in hosts]
    warnings = sum(r["status"] == "warn" for host in hosts for r in host["results"])
    return {
        "schema": "dcctl.run/1",
        "run_id": "20261128T133503Z-run-acceptance-3f2a",
        "command": "run",
        "playbook": "playbooks/acceptance.yaml",
        "started_at": STARTED,
        "finished_at": FINISHED,
        "dcctl_version": "0.1.0",
        "inventory": "inventories/rack-a.yaml",
        "status": "failed",
        "summary": {
            "hosts": len(hosts),
            "passed": statuses.count("passed"),
            "failed": statuses.count("failed"),
            "error": statuses.count("error"),
            "warnings": warnings,
        },
        "steps": [
            _step("preflight", "check", "failed", (2, 1, 1)),
            _step("perf", "bench", "failed", (1, 1, 0)),
        ],
        "hosts": hosts,
        "cluster_results": [certify, pair],
    }


@cache
def _cached(tmp: str) -> str:
    return json.dumps(_build(Path(tmp)))


def acceptance_run(tmp_path_factory: Any) -> dict[str, Any]:
    """A fresh copy of the two-step, four-host run (pytest's tmp_path_factory holds the trees)."""
    base = tmp_path_factory.getbasetemp() / "run-documents"
    base.mkdir(exist_ok=True)
    document: dict[str, Any] = json.loads(_cached(str(base)))
    return document


def host(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(h for h in document["hosts"] if h["name"] == name)
    return found


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Each GitHub table under a `## ` heading: its rows (header first) as cells, split at the
    pipes that are not escaped. Fails on a row whose cell count differs from its header's."""
    tables: dict[str, list[list[str]]] = {}
    title = ""
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("|") and not line.startswith("|---"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line[1:-1])]
            rows = tables.setdefault(title, [])
            assert not rows or len(cells) == len(rows[0]), (title, line)
            rows.append(cells)
    return tables
