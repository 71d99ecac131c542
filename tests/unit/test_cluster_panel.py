"""How a run's cluster results read on the console: the certify verdict, the cluster allreduce
row, the pairs tables, and their place in the run's output and summary line."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from dcctl.report.cluster_panel import print_cluster_results
from dcctl.report.console import print_run
from dcctl.report.progress import progress_text

HOSTS = ["gpu001", "gpu002"]


def rendered(results: list[dict[str, Any]], detail: bool = False) -> str:
    console = Console(record=True, width=120)
    print_cluster_results(console, results, detail)
    return console.export_text()


def rank_entry(rank: int, host: str, **changes: Any) -> dict[str, Any]:
    entry = {
        "rank": rank, "host": host, "local_rank": rank % 2,
        "gpu": {"index": rank % 2, "pci_bus_id": f"0000:1{rank}:00.0", "serial": None},
        "samples_per_s": 4560.0, "step_p50_s": 0.0121, "step_p99_s": 0.0150,
        "local_p50_s": 0.0080, "straggler": False, "checksum_ok": True,
    }  # fmt: skip
    return {**entry, **changes}


def certify(reasons: list[str], ranks: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    verdict = "not certified" if reasons else "certified"
    return {
        "id": "certify", "kind": "bench", "status": "fail" if reasons else "pass",
        "observed": verdict, "expected": None, "hosts": HOSTS,
        "message": f"not certified: {reasons[0]}" if reasons else "certified: 4 ranks",
        "metrics": {
            "samples_per_s": 18240.0, "samples_per_s_per_rank": 4560.0, "step_p50_s": 0.0121,
            "step_p99_s": 0.0150, "loss_initial": 1.02, "loss_final": 0.0312, "mfu": 0.412,
            "ranks": 4, "nodes": 2,
        },
        "certificate": {
            "verdict": verdict, "reasons": reasons,
            "ranks": ranks or [rank_entry(r, HOSTS[r // 2]) for r in range(4)],
            "versions": {h: {"torch": "2.13.0", "nccl": "2.21.5", "cuda": "12.4",
                             "driver": "550.54.15"} for h in HOSTS},
            "thresholds": {"loss_target": 0.05, "max_straggler": 0.1, "min_mfu": 0.3},
        },
    }  # fmt: skip


def test_a_certified_group_shows_its_verdict_and_figures() -> None:
    text = rendered([certify([])])
    assert "certify: gpu001, gpu002" in text
    assert "CERTIFIED" in text and "NOT CERTIFIED" not in text
    assert "ranks 4 on 2 node(s)" in text
    assert "samples/s 18,240 job, 4,560 per rank" in text
    assert "step p50 12.10 ms, p99 15.00 ms" in text
    assert "loss 1.02 -> 0.0312 (target 0.05)" in text
    assert "MFU 41.2% (min 30%)" in text
    assert "checksum" not in text.lower()  # the rank table waits for -v


def test_a_failed_group_names_each_reason_on_its_own_line() -> None:
    reasons = [
        "checksum mismatch at step 200: rank 3 on gpu002 (GPU 1, 0000:13:00.0) differs from "
        "the other 3 ranks",
        "straggler: rank 1 on gpu001 median local step time 9.8 ms, 23% above the median",
    ]
    ranks = [rank_entry(r, HOSTS[r // 2]) for r in range(4)]
    ranks[1]["straggler"] = True
    ranks[3]["checksum_ok"] = False
    text = rendered([certify(reasons, ranks)], detail=True)
    assert "NOT CERTIFIED" in text
    lines = text.splitlines()
    assert any("rank 3 on gpu002" in line and "rank 1" not in line for line in lines)
    assert any("rank 1 on gpu001" in line and "rank 3" not in line for line in lines)
    # -v: a row per rank, the bad ones marked, and the versions each host ran.
    row_3 = next(line for line in lines if "0000:13:00.0" in line and "differs" in line)
    assert "gpu002" in row_3
    assert any("gpu001" in line and "yes" in line for line in lines)
    assert any("gpu002" in line and "550.54.15" in line for line in lines)


def test_a_result_without_a_certificate_still_reads() -> None:
    result = {"id": "certify", "status": "error", "message": "group never ran", "hosts": HOSTS}
    text = rendered([result], detail=True)
    assert "NOT CERTIFIED" in text and "group never ran" in text


def test_cluster_allreduce_is_a_row_and_its_sweep_with_detail() -> None:
    sizes = [
        {"bytes": 1 << 20, "time_us": 210.0, "algbw_gbs": 5.0, "busbw_gbs": 7.5, "wrong": 0},
        {"bytes": 1 << 30, "time_us": 31000.0, "algbw_gbs": 34.6, "busbw_gbs": 51.9, "wrong": 0},
    ]
    result = {
        "id": "cluster.allreduce", "kind": "bench", "status": "pass", "observed": 51.9,
        "expected": {"min_busbw_gbs": 40.0}, "message": "busbw 51.9 GB/s", "hosts": HOSTS,
        "metrics": {"busbw_gbs": 51.9, "algbw_gbs": 34.6, "bytes": 1 << 30, "ranks": 2,
                    "nodes": 2, "net_only": True},
        "sizes": sizes,
    }  # fmt: skip
    text = rendered([result])
    row = next(line for line in text.splitlines() if "gpu001, gpu002" in line)
    for cell in ("2 on 2 nodes, net only", "1 GiB", "34.60", "51.90", "pass"):
        assert cell in row
    assert "sweep" not in text
    detailed = rendered([result], detail=True)
    assert "allreduce sweep" in detailed and "1 MiB" in detailed and "7.50" in detailed


def pair(number: int, hosts: list[str], busbw: float) -> dict[str, Any]:
    return {
        "id": "cluster.allreduce.pair", "kind": "bench", "pass": number, "hosts": hosts,
        "status": "pass" if busbw >= 8.0 else "fail", "message": f"busbw {busbw}",
        "metrics": {"busbw_gbs": busbw, "algbw_gbs": busbw / 2, "bytes": 1 << 30, "ranks": 2},
    }  # fmt: skip


def test_pairs_show_a_table_per_pass_and_the_flagged_node() -> None:
    results = [
        pair(1, ["a", "b"], 24.0), pair(1, ["c", "d"], 3.1),
        pair(2, ["a", "d"], 23.8), pair(2, ["b", "c"], 3.0),
        {"id": "cluster.allreduce.pairs", "kind": "bench", "status": "fail",
         "observed": {"flagged": ["c"]}, "message": "slow node: c (below 8.0 GB/s with b and d)",
         "hosts": ["a", "b", "c", "d"], "flagged": ["c"], "threshold_gbs": 8.0,
         "threshold_from": "expect"},
    ]  # fmt: skip
    text = rendered(results)
    assert "pass 1" in text and "pass 2" in text
    lines = text.splitlines()
    assert any("c + d" in line and "3.10" in line and "fail" in line for line in lines)
    summary = next(line for line in lines if line.startswith("allreduce pairs:"))
    assert "slow node: c" in summary and "flagged: c" in summary and "8.00 GB/s" in summary


def run_document(cluster_results: list[dict[str, Any]]) -> dict[str, Any]:
    failed = any(r["status"] == "fail" for r in cluster_results)
    return {
        "run_id": "20261128T133501Z-certify-3f2a", "command": "certify",
        "status": "failed" if failed else "passed",
        "summary": {"hosts": 2, "passed": 2, "failed": 0, "error": 0, "warnings": 0},
        "hosts": [{"name": h, "status": "passed", "error": None, "facts": {}, "results": []}
                  for h in HOSTS],
        "cluster_results": cluster_results,
    }  # fmt: skip


@pytest.mark.parametrize(("reasons", "shown"), [([], False), (["loss not reached"], True)])
def test_quiet_shows_the_panel_only_when_it_is_not_a_pass(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    reasons: list[str], shown: bool,
) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "160")
    print_run(run_document([certify(reasons)]), "/tmp/run", only_problems=True)
    out = capsys.readouterr().out
    assert ("CERTIFIED" in out) is shown
    verdict = "failed" if reasons else "passed"
    assert f"2 passed, 0 failed, 0 error, 0 warning(s); cluster: certify {verdict}" in out


def test_the_panel_comes_after_the_hosts_and_before_the_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    pairs = [pair(1, ["a", "b"], 24.0), pair(1, ["c", "d"], 3.1)]
    print_run(run_document([certify(["loss not reached"]), certify([]), *pairs]), "/tmp/run")
    out = capsys.readouterr().out
    assert out.index("gpu002") < out.index("NOT CERTIFIED") < out.index("host(s):")
    # Several groups are counted; pairs without their summary count one by one.
    summary = " ".join(out[out.index("host(s):") :].split())  # wrapped at the width
    counts = "cluster: certify 1 failed, 1 passed, cluster.allreduce.pair 1 failed, 1 passed"
    assert counts in summary


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        ({"phase": "certify", "step": 120, "of": 300, "loss": 0.0412, "samples_per_s": 18240.4},
         "certify step 120/300 loss 0.0412 18,240 samples/s"),
        ({"phase": "certify", "step": 1, "of": 300}, "certify step 1/300"),
        ({"phase": "joined", "node_rank": 1}, "joined"),
    ],
)  # fmt: skip
def test_progress_text_of_gang_workers(progress: dict[str, Any], text: str) -> None:
    assert progress_text(progress) == text
