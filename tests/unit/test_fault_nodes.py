"""Issue-level acceptance on recorded nodes: the healthy H100 passes every check, and each
faulty node fails with exactly the finding it was built for, and nothing spurious."""

from __future__ import annotations

from pathlib import Path

import pytest
from sysroots import FAULT_FINDINGS, H100_EXPECT, build_sysroot, fault_names

from dcctl.evaluate.node import evaluate_node
from dcctl.evaluate.result import Result
from dcctl.node.facts import collect_facts

PARAMS = {"scratch_dir": "/var/tmp/dcctl", "xid_window_h": 24, "dcgm_level": 1}


def judge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str | None) -> list[Result]:
    monkeypatch.setenv("DCCTL_SYSROOT", str(build_sysroot(tmp_path, fault)))
    return evaluate_node(collect_facts(PARAMS), H100_EXPECT)


def findings(results: list[Result]) -> dict[str, str]:
    return {r.id: r.status for r in results if r.status != "pass"}


def test_every_fault_overlay_has_a_declared_finding() -> None:
    assert set(fault_names()) == set(FAULT_FINDINGS)


def test_healthy_h100_passes_everything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = judge(tmp_path, monkeypatch, None)
    assert findings(results) == {}
    judged = {r.id for r in results}
    # The health checks really ran: not an empty list that passes by saying nothing.
    assert {"gpu.ecc.uncorrected", "gpu.pcie.width", "gpu.nvlink.state", "kernel.xid",
            "fabric.manager", "ib.state", "dcgm.software"} <= judged  # fmt: skip


@pytest.mark.parametrize("fault", sorted(FAULT_FINDINGS))
def test_fault_gives_exactly_its_finding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    results = judge(tmp_path, monkeypatch, fault)
    assert findings(results) == FAULT_FINDINGS[fault]
    gpu_findings = [r for r in results if r.status != "pass" and r.id.startswith("gpu.")]
    for result in gpu_findings:
        if result.id != "gpu.count":  # a missing GPU has no index to name
            assert result.gpu is not None and result.gpu["pci_bus_id"], result
            assert result.message.startswith(f"GPU {result.gpu['index']} ("), result.message
