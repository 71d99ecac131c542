"""DCGM diagnostics documents written by DCGM itself (tests/fixtures/real/dcgm/), each with the
source it came from beside it, parsed and judged end to end through a recorded node."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, build_sysroot

from dcctl.evaluate.dcgm import evaluate_dcgm
from dcctl.node.facts import collect_facts
from dcctl.node.probes import dcgm
from dcctl.node.sysroot import SYSROOT_ENV

REAL = FIXTURES / "real" / "dcgm"
SAMPLES = sorted(REAL.glob("*.json"))
PER_GPU = REAL / "nvidia-dcgm-testdiagmanagerstrings-per-gpu.json"


def recorded_node(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path) -> dict[str, Any]:
    """Facts of the healthy recorded node whose dcgmi printed `sample`."""
    root = build_sysroot(tmp_path)
    shutil.copy(sample, root / "dcctl-recorded" / dcgm.RECORDED_NAME)
    monkeypatch.setenv(SYSROOT_ENV, str(root))
    return collect_facts({"scratch_dir": "/var/tmp/dcctl", "dcgm_level": 3})


def test_every_sample_names_its_source() -> None:
    assert SAMPLES
    for sample in SAMPLES:
        source = sample.with_name(sample.stem + ".source.txt")
        assert "https://github.com/" in source.read_text(), sample.name


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.stem for s in SAMPLES])
def test_every_sample_parses_and_is_judged(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path
) -> None:
    facts = recorded_node(monkeypatch, tmp_path, sample)
    record = facts["dcgm"]
    assert record["available"] and record["error"] is None
    assert record["tests"]
    results = evaluate_dcgm(facts)
    assert results
    # Every row's status is one DCGM defines; none is judged "unrecognised".
    assert not [r for r in results if r.status == "error"]


def test_per_gpu_sample_rows() -> None:
    rows = dcgm.parse_diag(json.loads(PER_GPU.read_text()))["tests"]
    by_test = Counter((r["name"], r["result"]) for r in rows)
    # Ten node-wide deployment checks, then four GPUs per plugin.
    assert sum(n for (name, _), n in by_test.items() if name[0].isupper()) == 10
    assert by_test[("sm_stress", "Fail")] == 3 and by_test[("sm_stress", "Pass")] == 1
    ecc = next(r for r in rows if r["name"] == "memory" and r["gpu"] == 0)
    assert ecc["result"] == "Skip" and ecc["severities"] == [2]
    assert ecc["info"].startswith("ECC memory on GPU 0 is not currently active.")


def test_per_gpu_sample_verdicts(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    facts = recorded_node(monkeypatch, tmp_path, PER_GPU)
    results = evaluate_dcgm(facts)
    stress = [r for r in results if r.id == "dcgm.sm_stress" and r.status != "pass"]
    # "Max stress level ... did not exceed desired stress level" carries severity 1, MONITOR:
    # DCGM says the GPU can run work but should be watched, so it is a warning per GPU.
    assert [(r.status, (r.gpu or {}).get("index")) for r in stress] == [
        ("warn", 0),
        ("warn", 2),
        ("warn", 3),
    ]
    assert all("(DCGM MONITOR)" in r.message for r in stress)
    # Skips fold into one line per test and say why.
    memory_skip = next(r for r in results if r.id == "dcgm.memory" and r.status == "skip")
    assert "ECC memory on GPU 0 is not currently active" in memory_skip.message
    assert not [r for r in results if r.status == "fail"]
