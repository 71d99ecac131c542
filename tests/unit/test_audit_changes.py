"""What an audit prints: only what changed, and never a recovery that was not observed."""

from __future__ import annotations

from typing import Any

from dcctl.audit.changes import change_line, changes, document_findings, evaluated
from dcctl.results.history_query import CLUSTER_HOST, Finding


def host(name: str, *results: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    failed = any(r["status"] == "fail" for r in results)
    return {
        "name": name,
        "status": "error" if error else "failed" if failed else "passed",
        "error": {"kind": "unreachable", "message": error} if error else None,
        "results": list(results),
    }


def result(result_id: str, status: str, step: str, gpu: int | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"id": result_id, "status": status, "message": f"{result_id} says",
                             "step": step}  # fmt: skip
    if gpu is not None:
        found["gpu"] = {"index": gpu, "pci_bus_id": None, "serial": None}
    return found


def audit(*hosts: dict[str, Any], cluster: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    return {"hosts": list(hosts), "cluster_results": list(cluster)}


def lines(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    found = changes(document_findings(before), document_findings(after), evaluated(after))
    return [change_line(change) for change in found]


def test_the_same_findings_twice_say_nothing() -> None:
    run = audit(host("gpu1", result("ecc", "fail", "check", gpu=3), result("gemm", "pass", "g")))
    assert lines(run, run) == []


def test_new_worse_better_and_recovered_are_one_line_each() -> None:
    before = audit(
        host("gpu1", result("ecc", "warn", "check", gpu=3)),
        host("gpu2", result("temp", "fail", "check")),
        host("gpu3", result("pcie", "warn", "check")),
    )
    after = audit(
        host("gpu1", result("ecc", "fail", "check", gpu=3)),
        host("gpu2", result("temp", "warn", "check")),
        host("gpu3", result("pcie", "pass", "check"), result("xid", "fail", "check")),
    )
    assert lines(before, after) == [
        "gpu1 GPU 3: worse (was warn) FAIL: ecc: ecc says",
        "gpu2: better (was fail) WARN: temp: temp says",
        "gpu3: new FAIL: xid: xid says",
        "gpu3: recovered: pcie (was warn)",
    ]


def test_a_finding_of_a_step_that_did_not_run_has_not_recovered() -> None:
    before = audit(host("gpu1", result("ok", "pass", "check"), result("gemm", "fail", "gemm")))
    # The GEMM step was skipped (or stopped) this time: only the check step ran.
    after = audit(host("gpu1", result("ok", "pass", "check")))
    assert lines(before, after) == []


def test_an_unreachable_host_is_one_finding_and_keeps_its_old_ones() -> None:
    before = audit(host("gpu1", result("ecc", "fail", "check")))
    down = audit(host("gpu1", error="connection refused"))
    assert lines(before, down) == [
        "gpu1: new ERROR: unreachable or not evaluated: connection refused"
    ]
    assert lines(down, down) == []
    assert lines(down, before) == [
        "gpu1: new FAIL: ecc: ecc says",
        "gpu1: recovered: unreachable or not evaluated (was error)",
    ]


def test_a_host_error_from_the_history_matches_whatever_step_it_was_in() -> None:
    down = audit(host("gpu1", error="connection refused"))
    from_history = [Finding("gpu1", "host", None, "error", "connection refused", step="check")]
    assert changes(from_history, document_findings(down), evaluated(down)) == []


def test_regressions_and_cluster_verdicts_are_findings_too() -> None:
    before = audit(host("gpu1", result("ok", "pass", "gemm")))
    after = audit(
        host("gpu1", result("baseline.bench.gemm.bf16.tflops", "warn", "gemm")),
        cluster=(result("certify", "fail", "certify"),),
    )
    assert lines(before, after) == [
        "gpu1: new REGRESSION WARN: baseline.bench.gemm.bf16.tflops: "
        "baseline.bench.gemm.bf16.tflops says",
        f"{CLUSTER_HOST}: new FAIL: certify: certify says",
    ]
