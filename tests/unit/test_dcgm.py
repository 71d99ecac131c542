"""DCGM diagnostics: the dcgmi runner, the 3.x and 4.x JSON parser, and the evaluator."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, HEALTHY, build_sysroot

from dcctl.evaluate.dcgm import evaluate_dcgm, slug
from dcctl.evaluate.result import Result
from dcctl.node import facts as facts_module
from dcctl.node.facts import TaskParamsError, collect_facts
from dcctl.node.probes import dcgm
from dcctl.node.sysroot import SYSROOT_ENV

V4_HEALTHY = HEALTHY / "dcctl-recorded" / "dcgmi-diag.json"
V4_FAIL = FIXTURES / "faults" / "dcgm-fail" / "dcctl-recorded" / "dcgmi-diag.json"
V3_TWO_FAILURES = FIXTURES / "dcgm" / "dcgmi-diag-3.3-r2-two-failures.json"
INFOROM = "A corrupt InfoROM has been detected in GPU 3."


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def node_facts(tests: list[dict[str, Any]], **dcgm_fields: Any) -> dict[str, Any]:
    """Facts of an 8-GPU node that ran a DCGM level-1 diagnostic with these test rows."""
    gpus = [
        {"index": i, "pci_bus_id": f"00000000:{0x18 + i:02X}:00.0", "serial": f"16542230{i:05}"}
        for i in range(8)
    ]
    record = {"available": True, "level": 1, "tests": tests, "error": None, **dcgm_fields}
    return {"gpus": gpus, "dcgm": record}


def row(
    name: str,
    result: str,
    gpu: int | None,
    info: str | None = None,
    severities: tuple[int, ...] = (),
) -> dict[str, Any]:
    return {"name": name, "result": result, "gpu": gpu, "info": info, "severities": [*severities]}


def summary(results: list[Result]) -> list[tuple[str, str, int | None]]:
    return [(r.id, r.status, (r.gpu or {}).get("index")) for r in results]


def write_dcgmi(directory: Path, script: str) -> Path:
    """A stand-in `dcgmi` executable: real subprocess, scripted output."""
    path = directory / "dcgmi"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


# --- parser ---------------------------------------------------------------------------------


def test_parse_dcgm4_passing_level1() -> None:
    parsed = dcgm.parse_diag(load(V4_HEALTHY))
    assert parsed["error"] is None
    assert parsed["tests"] == [row("software", "Pass", i) for i in range(8)]


def test_parse_dcgm4_failure_names_the_gpu_once() -> None:
    parsed = dcgm.parse_diag(load(V4_FAIL))
    failed = [t for t in parsed["tests"] if t["result"] != "Pass"]
    # The Fail test_summary repeats GPU 3's row; it is not recorded a second time.
    assert failed == [row("software", "Fail", 3, INFOROM, (2,))]
    assert len(parsed["tests"]) == 8


def test_parse_dcgm3_document() -> None:
    parsed = dcgm.parse_diag(load(V3_TWO_FAILURES))
    tests = parsed["tests"]
    assert parsed["error"] is None
    assert len(tests) == 9 + 8 + 8  # deployment checks, PCIe and GPU Memory per GPU
    assert tests[0] == row("Denylist", "Pass", None)
    # 3.x deployment errors carry an integer gpu_id and the text under "warnings".
    env = next(t for t in tests if t["name"] == "Environment Variables")
    assert (env["result"], env["gpu"]) == ("Fail", 0)
    assert "CUDA_LAUNCH_BLOCKING" in env["info"]
    pcie = next(t for t in tests if t["name"] == "PCIe" and t["gpu"] == 2)
    assert pcie["result"] == "Fail"
    # Warnings come first, then the measured figures.
    assert pcie["info"].startswith("Bandwidth of GPU 2 in direction host to device of 12.18")
    assert "Host to GPU bandwidth:\t\t12.18 GB/s" in pcie["info"]
    memory = [t for t in tests if t["name"] == "GPU Memory"]
    assert [t["gpu"] for t in memory] == list(range(8))
    assert {t["info"] for t in memory} == {"Allocated 83837484646 bytes (98.0%)"}


def test_parse_dcgm4_entities_info_lists_and_summary_only_errors() -> None:
    document = {
        "DCGM Diagnostic": {
            "test_categories": [
                {
                    "category": "Hardware",
                    "tests": [
                        {
                            "name": "memory",
                            "results": [
                                {"entity_group": "GPU", "entity_id": 0, "status": "skip",
                                 "info": ["ECC is disabled", "test skipped"]},
                                {"entity_group": "CPU", "entity_id": 1, "status": "Pass"},
                            ],
                            "test_summary": {"status": "Skip"},
                        },
                        {
                            "name": "pcie",
                            "results": [],
                            "test_summary": {
                                "status": "Fail",
                                "warnings": [{"error_id": 97, "warning": "Pause/Resume failed"}],
                            },
                        },
                        {"name": "eud", "results": [{"entity_id": "x", "status": "Not Run"}]},
                    ],
                }
            ]
        }
    }  # fmt: skip
    assert dcgm.parse_diag(document)["tests"] == [
        row("memory", "Skip", 0, "ECC is disabled; test skipped"),
        row("memory", "Pass", None),  # a CPU entity id is not a GPU index
        row("pcie", "Fail", None, "Pause/Resume failed"),
        row("eud", "Not Run", None),
    ]


def test_parse_runtime_error_and_foreign_documents() -> None:
    error = {"DCGM GPU Diagnostic": {"version": "3.3.5", "runtime_error": "Error: DCGM is paused."}}
    assert dcgm.parse_diag(error) == {"tests": [], "error": "Error: DCGM is paused."}
    assert dcgm.parse_diag({"body": {}})["error"] == "dcgmi output has no DCGM diagnostic section"
    empty = {"DCGM Diagnostic": {"test_categories": []}}
    assert dcgm.parse_diag(empty)["error"] == "dcgmi reported no test results"


def test_parse_output_skips_a_notice_before_the_document() -> None:
    text = "Notice: started an embedded host engine\n" + V4_HEALTHY.read_text()
    assert len(dcgm.parse_diag_output(text)["tests"]) == 8
    with pytest.raises(dcgm.DcgmRunError, match="no JSON document: Error: unable to connect"):
        dcgm.parse_diag_output("Error: unable to connect to host engine\n")


# --- running dcgmi --------------------------------------------------------------------------


def test_run_dcgmi_passes_level_and_ignores_failure_exit_status(tmp_path: Path) -> None:
    # dcgmi exits non-zero when a test fails; the document is still the answer.
    fake = write_dcgmi(tmp_path, f'echo "$@" > {tmp_path}/argv\ncat {V4_FAIL}\nexit 226')
    assert dcgm.run_dcgmi(str(fake), 2, 10) == V4_FAIL.read_text()
    assert (tmp_path / "argv").read_text().split() == ["diag", "-r", "2", "--json"]


def test_run_dcgmi_without_output_reports_stderr(tmp_path: Path) -> None:
    fake = write_dcgmi(tmp_path, "echo 'Error: NVML library not found' >&2\nexit 1")
    with pytest.raises(dcgm.DcgmRunError, match="printed nothing: Error: NVML library not found"):
        dcgm.run_dcgmi(str(fake), 1, 10)


def test_run_dcgmi_timeout_stops_it(tmp_path: Path) -> None:
    fake = write_dcgmi(tmp_path, "exec sleep 30")
    started = time.monotonic()
    with pytest.raises(dcgm.DcgmRunError, match=r"dcgmi diag -r 3 did not finish within 0.5 s"):
        dcgm.run_dcgmi(str(fake), 3, 0.5)
    assert time.monotonic() - started < 10


def test_collect_dcgm_not_requested() -> None:
    assert dcgm.collect_dcgm(None) == {}


def test_collect_dcgm_without_dcgmi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SYSROOT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert dcgm.collect_dcgm(1) == {
        "dcgm": {"available": False, "level": 1, "tests": [], "error": dcgm.NOT_INSTALLED}
    }


def test_collect_dcgm_runs_dcgmi_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SYSROOT_ENV, raising=False)
    # The stand-in comes first; the rest of PATH is there for the `cat` it runs.
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    write_dcgmi(tmp_path, f"cat {V4_HEALTHY}")
    record = dcgm.collect_dcgm(1)["dcgm"]
    assert (record["available"], record["level"], record["error"]) == (True, 1, None)
    assert len(record["tests"]) == 8


def test_collect_dcgm_garbled_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(SYSROOT_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    write_dcgmi(tmp_path, "echo 'Segmentation fault'")
    record = dcgm.collect_dcgm(2)["dcgm"]
    assert record["available"] is True
    assert record["tests"] == []
    assert record["error"] == "dcgmi printed no JSON document: Segmentation fault"


def test_dcgm_level_param_is_validated() -> None:
    assert facts_module._params({"dcgm_level": 3})["dcgm_level"] == 3
    assert facts_module._params({})["dcgm_level"] is None
    for bad in (0, 4, "1", 1.0, True):
        with pytest.raises(TaskParamsError, match="dcgm_level must be 1, 2 or 3"):
            facts_module._params({"dcgm_level": bad})


# --- evaluation -----------------------------------------------------------------------------


def test_slug() -> None:
    assert slug("Page Retirement/Row Remap") == "page_retirement_row_remap"
    assert slug("software") == "software"
    assert slug("GPU Memory") == "gpu_memory"


def test_no_results_without_a_dcgm_run() -> None:
    assert evaluate_dcgm({"gpus": []}) == []


def test_unavailable_dcgm_is_one_skip_with_the_reason() -> None:
    facts = node_facts([], available=False, error=dcgm.NOT_INSTALLED)
    assert evaluate_dcgm(facts) == [
        Result(
            "dcgm.diag",
            "skip",
            "DCGM diagnostic skipped: dcgmi not found; install DCGM (datacenter-gpu-manager) "
            "to run diagnostics",
        )
    ]


def test_failed_probe_and_failed_run_are_errors() -> None:
    broken = {"dcgm": None, "probe_errors": {"dcgm": "OSError: [Errno 8] Exec format error"}}
    assert summary(evaluate_dcgm(broken)) == [("dcgm.diag", "error", None)]
    assert "Exec format error" in evaluate_dcgm(broken)[0].message
    timed_out = node_facts([], error="dcgmi diag -r 1 did not finish within 120 s")
    [result] = evaluate_dcgm(timed_out)
    assert (result.id, result.status) == ("dcgm.diag", "error")
    assert result.message == (
        "DCGM diagnostic level 1 did not complete: dcgmi diag -r 1 did not finish within 120 s"
    )


def test_passing_rows_fold_into_one_result() -> None:
    results = evaluate_dcgm(node_facts([row("software", "Pass", i) for i in range(8)]))
    assert results == [
        Result("dcgm.software", "pass", "DCGM software: Pass on 8 GPUs", "Pass", "Pass")
    ]


def test_failing_row_names_the_gpu() -> None:
    tests = [row("software", "Pass", i) for i in range(8) if i != 3]
    tests.append(row("software", "Fail", 3, INFOROM))
    fail, passed = evaluate_dcgm(node_facts(tests))
    assert fail.id == "dcgm.software"
    assert fail.status == "fail"
    assert fail.gpu == {"index": 3, "pci_bus_id": "00000000:1B:00.0", "serial": "1654223000003"}
    assert fail.message == f"DCGM software: GPU 3 (00000000:1B:00.0, SN 1654223000003): {INFOROM}"
    assert (passed.status, passed.message) == ("pass", "DCGM software: Pass on 7 GPUs")


def test_dcgm3_document_end_to_end_through_the_evaluator() -> None:
    facts = node_facts(dcgm.parse_diag(load(V3_TWO_FAILURES))["tests"])
    assert summary(evaluate_dcgm(facts)) == [
        ("dcgm.denylist", "pass", None),
        ("dcgm.nvml_library", "pass", None),
        ("dcgm.cuda_main_library", "pass", None),
        ("dcgm.permissions_and_os_blocks", "pass", None),
        ("dcgm.persistence_mode", "pass", None),
        # CUDA_LAUNCH_BLOCKING set: DCGM rates it MONITOR (the GPU can work), so a warning.
        ("dcgm.environment_variables", "warn", 0),
        ("dcgm.page_retirement_row_remap", "pass", None),
        ("dcgm.graphics_processes", "pass", None),
        ("dcgm.inforom", "pass", None),
        ("dcgm.pcie", "fail", 2),
        ("dcgm.pcie", "pass", None),
        ("dcgm.gpu_memory", "pass", None),
    ]


def test_warn_skip_unknown_and_unlisted_gpus() -> None:
    tests = [
        row("Targeted Power", "Warn", 1, "Enforced power limit 500 W is below the target"),
        row("Diagnostic", "Skip", 0, "EUD not installed"),
        row("Diagnostic", "Skip", 1, "EUD not installed"),
        row("Memtest", "Not Run", 9),
    ]
    warn, skip, unknown = evaluate_dcgm(node_facts(tests))
    assert summary([warn]) == [("dcgm.targeted_power", "warn", 1)]
    assert (skip.id, skip.status) == ("dcgm.diagnostic", "skip")
    assert skip.message == "DCGM Diagnostic: Skip on 2 GPUs (EUD not installed)"
    # GPU 9 is not in the node's GPU list: named by its DCGM id, no gpu field.
    assert (unknown.status, unknown.gpu) == ("error", None)
    assert unknown.message == "DCGM Memtest: GPU 9: unrecognised DCGM status 'Not Run'"


# --- end to end on the node side ------------------------------------------------------------


def sysroot_facts(monkeypatch: pytest.MonkeyPatch, root: Path, **params: Any) -> dict[str, Any]:
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    return collect_facts({"scratch_dir": "/var/tmp/dcctl", **params})


def test_healthy_node_dcgm_level1_passes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path), dcgm_level=1)
    assert summary(evaluate_dcgm(facts)) == [("dcgm.software", "pass", None)]


def test_dcgm_fail_fault_names_gpu3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path, "dcgm-fail"), dcgm_level=1)
    fail = [r for r in evaluate_dcgm(facts) if r.status != "pass"]
    assert summary(fail) == [("dcgm.software", "fail", 3)]
    # The GPU as the recorded NVML reports it: PCI address and board serial.
    assert fail[0].gpu == {"index": 3, "pci_bus_id": "00000000:5D:00.0", "serial": "1654223026903"}
    assert fail[0].message.endswith(f"{INFOROM} (DCGM ISOLATE)")


def test_no_dcgm_key_unless_a_level_is_requested(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    facts = sysroot_facts(monkeypatch, build_sysroot(tmp_path, "dcgm-fail"))
    assert "dcgm" not in facts
    assert evaluate_dcgm(facts) == []


def test_recorded_node_without_dcgm_skips(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = build_sysroot(tmp_path)
    (root / "dcctl-recorded" / "dcgmi-diag.json").unlink()
    facts = sysroot_facts(monkeypatch, root, dcgm_level=2)
    assert facts["dcgm"]["available"] is False
    assert summary(evaluate_dcgm(facts)) == [("dcgm.diag", "skip", None)]


# --- DCGM 4.x severities and test summaries ----------------------------------------------------


def v4_test(name: str, results: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """A one-test DCGM 4.x document, laid out as dcgmi/Diag.cpp's JSON writer lays it out."""
    test = {"name": name, "results": results, "test_summary": summary}
    return {"DCGM Diagnostic": {"test_categories": [{"category": "Deployment", "tests": [test]}]}}


def v4_row(gpu: int, status: str, *warnings: tuple[int, int, str]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "entity_group": "GPU",
        "entity_group_id": 1,
        "entity_id": gpu,
        "status": status,
    }
    if warnings:
        result["warnings"] = [
            {"error_category": 8, "error_id": code, "error_severity": severity, "warning": text}
            for code, severity, text in warnings
        ]
    return result


PERSISTENCE = (29, 5, "Persistence mode for GPU 1 is disabled.")


def test_dcgm4_config_severity_is_a_warning_not_a_failure() -> None:
    # DCGM 4.x's JSON writes a WARN result as "Fail"; DCGM_FR_PERSISTENCE_MODE is CONFIG (5).
    code, severity, text = PERSISTENCE
    summary_doc = {
        "status": "Fail",
        "warnings": [
            {"error_category": 8, "error_id": code, "error_severity": severity, "warning": text}
        ],
    }
    document = v4_test("software", [v4_row(0, "Pass"), v4_row(1, "Fail", PERSISTENCE)], summary_doc)
    rows = dcgm.parse_diag(document)["tests"]
    # The summary repeats GPU 1's error and adds nothing: it is not a row of its own.
    assert rows == [
        row("software", "Pass", 0),
        row("software", "Fail", 1, PERSISTENCE[2], (5,)),
    ]
    warn, passed = evaluate_dcgm(node_facts(rows))
    assert summary([warn]) == [("dcgm.software", "warn", 1)]
    assert warn.message.endswith("Persistence mode for GPU 1 is disabled. (DCGM CONFIG)")
    assert passed.status == "pass"


@pytest.mark.parametrize(
    ("severities", "status"),
    [
        ((0,), "warn"),
        ((1,), "warn"),
        ((5,), "warn"),
        ((1, 5), "warn"),
        ((2,), "fail"),
        ((6,), "fail"),
        ((4,), "fail"),
        ((3,), "fail"),
        ((1, 2), "fail"),  # one ISOLATE among MONITOR findings isolates the GPU
        ((9,), "fail"),  # a severity this version of dcctl does not know
        ((), "fail"),  # 3.x "Fail" rows without severities stay failures
    ],
)
def test_fail_rows_are_judged_by_dcgm_severity(severities: tuple[int, ...], status: str) -> None:
    (result,) = evaluate_dcgm(node_facts([row("memory", "Fail", 2, "x", severities)]))
    assert (result.status, (result.gpu or {}).get("index")) == (status, 2)


def test_malformed_severities_are_ignored_not_trusted() -> None:
    tests = [{**row("memory", "Fail", 2, "x"), "severities": ["5", True, None]}]
    (result,) = evaluate_dcgm(node_facts(tests))
    assert result.status == "fail"
    tests = [{**row("memory", "Fail", 2, "x"), "severities": "5"}]
    assert [r.status for r in evaluate_dcgm(node_facts(tests))] == ["fail"]


def test_dcgm4_summary_only_error_is_kept_beside_gpu_rows() -> None:
    # An error of no entity (DCGM_FE_NONE) is only in test_summary, whose verdict matches a
    # GPU row's: it must still be reported, with its own severity, and not repeat GPU 1's.
    gpu_error = (9, 2, "A corrupt InfoROM has been detected in GPU 1.")
    node_error = (97, 6, "Pause/Resume of the host engine failed.")
    summary_doc = {
        "status": "Fail",
        "warnings": [
            {"error_category": 15, "error_id": c, "error_severity": s, "warning": t}
            for c, s, t in (gpu_error, node_error)
        ],
        "info": ["Ran on 2 GPUs"],
    }
    document = v4_test("software", [v4_row(0, "Pass"), v4_row(1, "Fail", gpu_error)], summary_doc)
    rows = dcgm.parse_diag(document)["tests"]
    assert rows == [
        row("software", "Pass", 0),
        row("software", "Fail", 1, gpu_error[2], (2,)),
        row("software", "Fail", None, f"{node_error[2]}; Ran on 2 GPUs", (6,)),
    ]
    results = evaluate_dcgm(node_facts(rows))
    assert summary(results) == [
        ("dcgm.software", "fail", 1),
        ("dcgm.software", "fail", None),
        ("dcgm.software", "pass", None),
    ]
    assert "(DCGM RESET)" in results[1].message
