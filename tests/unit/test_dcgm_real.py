"""`dcgmi diag --json` documents printed on real machines or kept by NVIDIA's own tests
(tests/fixtures/real/dcgm/), each with the source it came from beside it, parsed and judged end
to end through a recorded node."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sysroots import FIXTURES, build_sysroot

from dcctl.evaluate.dcgm import evaluate_dcgm
from dcctl.evaluate.result import Result
from dcctl.node.facts import collect_facts
from dcctl.node.probes import dcgm
from dcctl.node.sysroot import SYSROOT_ENV

REAL = FIXTURES / "real" / "dcgm"
SAMPLES = sorted(REAL.glob("*.json"))
PER_GPU = REAL / "nvidia-dcgm-testdiagmanagerstrings-per-gpu.json"
GB10_L1 = REAL / "glimmer-burnin-gb10-level1.json"
GB10_L2_SKIP = REAL / "glimmer-burnin-gb10-level2-partial-skip.json"
GB10_L2_GATED = REAL / "glimmer-burnin-gb10-level2-plugins-gated.json"
GB10_L2_ALLOWED = REAL / "glimmer-burnin-gb10-level2-plugins-allowed.json"
V3_REAL_OUTPUT = REAL / "nvidia-dcgm-jsonresulttests-real-output-3.1.0.json"
VC_R2 = REAL / "virtualclient-dcgmidiag-r2.json"
VC_R3 = REAL / "virtualclient-dcgmidiag-r3.json"
PERSISTENCE = (
    'Persistence mode for GPU 0 is disabled. Enable persistence mode by running "nvidia-smi'
)
SRAM = "Error getting the SRAM Threshold Count for GPU 0."
DEPLOYMENT_3X = (
    "denylist",
    "nvml_library",
    "cuda_main_library",
    "permissions_and_os_blocks",
    "persistence_mode",
    "environment_variables",
    "page_retirement_row_remap",
    "graphics_processes",
    "inforom",
)
# The software test of every GB10 capture: DCGM_FR_PERSISTENCE_MODE on GPU 0 is severity 5,
# DCGM_ERROR_CONFIG ("can be configured"), so a warning; the test_summary's "Fail" is that same
# finding plus an info line of no entity, kept beside it and judged the same.
GB10_SOFTWARE = [("dcgm.software", "warn", 0), ("dcgm.software", "warn", None)]


def verdicts(results: list[Result]) -> list[tuple[str, str, int | None]]:
    return [(r.id, r.status, (r.gpu or {}).get("index")) for r in results]


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


# Every sample and the results it implies, in the evaluator's order, by DCGM's own severities
# (dcgmlib/dcgm_errors.h): nothing in these captures is ISOLATE, RESET or TRIAGE, so none fails.
EXPECTED: dict[Path, list[tuple[str, str, int | None]]] = {
    GB10_L1: GB10_SOFTWARE,
    GB10_L2_SKIP: [*GB10_SOFTWARE, ("dcgm.memory", "skip", None), ("dcgm.pcie", "skip", None)],
    GB10_L2_GATED: [*GB10_SOFTWARE, ("dcgm.memory", "skip", None), ("dcgm.pcie", "skip", None)],
    GB10_L2_ALLOWED: [*GB10_SOFTWARE, ("dcgm.memory", "pass", None), ("dcgm.pcie", "pass", None)],
    # DCGM 3.1 spelled two deployment checks otherwise than DEPLOYMENT_3X (3.3 era).
    V3_REAL_OUTPUT: [
        ("dcgm.denylist", "pass", None),
        ("dcgm.nvml_library", "pass", None),
        ("dcgm.cuda_main_library", "pass", None),
        ("dcgm.permissions_and_os_related_blocks", "pass", None),
        ("dcgm.persistence_mode", "pass", None),
        ("dcgm.environmental_variables", "pass", None),
        ("dcgm.page_retirement_row_remap", "pass", None),
        ("dcgm.graphics_processes", "pass", None),
        ("dcgm.inforom", "pass", None),
        ("dcgm.software", "pass", None),
    ],
    VC_R2: [
        *[(f"dcgm.{name}", "pass", None) for name in DEPLOYMENT_3X],
        ("dcgm.pcie", "pass", None),
        ("dcgm.gpu_memory", "pass", None),
    ],
    VC_R3: [
        *[(f"dcgm.{name}", "pass", None) for name in DEPLOYMENT_3X],
        ("dcgm.pcie", "pass", None),
        ("dcgm.gpu_memory", "pass", None),
        ("dcgm.diagnostic", "pass", None),
        ("dcgm.eud_test", "skip", None),
        ("dcgm.targeted_stress", "pass", None),
        ("dcgm.targeted_power", "pass", None),
        ("dcgm.memory_bandwidth", "pass", None),
    ],
}


def test_every_sample_has_expected_verdicts() -> None:
    assert set(EXPECTED) | {PER_GPU} == set(SAMPLES)


@pytest.mark.parametrize("sample", sorted(EXPECTED), ids=[s.stem for s in sorted(EXPECTED)])
def test_sample_verdicts_end_to_end(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path
) -> None:
    facts = recorded_node(monkeypatch, tmp_path, sample)
    assert verdicts(evaluate_dcgm(facts)) == EXPECTED[sample]


@pytest.mark.parametrize("sample", [GB10_L1, GB10_L2_SKIP], ids=["level1", "level2"])
def test_dcgm_4_2_bare_summary_fail_is_the_config_finding_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sample: Path
) -> None:
    # DCGM 4.2.3 writes the summary "Fail" with only its own (DCGM_FE_NONE) info line: the
    # errors behind the verdict are GPU 0's, so the summary carries GPU 0's severity.
    document = json.loads(sample.read_text())
    assert (
        "warnings"
        not in document["DCGM Diagnostic"]["test_categories"][0]["tests"][0]["test_summary"]
    )
    rows = [r for r in dcgm.parse_diag(document)["tests"] if r["name"] == "software"]
    assert [(r["result"], r["gpu"], r["severities"]) for r in rows] == [
        ("Fail", 0, [5]),
        ("Fail", None, [5]),
    ]
    assert PERSISTENCE in rows[0]["info"]
    assert rows[1]["info"].startswith(SRAM) and PERSISTENCE not in rows[1]["info"]
    gpu_row, summary_row = (
        r
        for r in evaluate_dcgm(recorded_node(monkeypatch, tmp_path, sample))
        if r.id == "dcgm.software"
    )
    assert gpu_row.message.endswith("as root. (DCGM CONFIG)")
    assert SRAM in summary_row.message and summary_row.status == "warn"


def test_bare_summary_fail_without_severities_behind_it_stays_a_failure() -> None:
    # The same 4.2.3 document with GPU 0's severity taken away: nothing says the verdict is a
    # setting any more, so neither the GPU row nor the summary may be judged usable.
    document = json.loads(GB10_L1.read_text())
    test = document["DCGM Diagnostic"]["test_categories"][0]["tests"][0]
    del test["results"][0]["warnings"][0]["error_severity"]
    rows = dcgm.parse_diag(document)["tests"]
    assert [(r["gpu"], r["severities"]) for r in rows] == [(0, []), (None, [])]
    record = {"available": True, "level": 1, "tests": rows, "error": None}
    facts: dict[str, Any] = {"gpus": [{"index": 0}], "dcgm": record}
    assert [r.status for r in evaluate_dcgm(facts)] == ["fail", "fail"]


def test_dcgm_4_5_summary_repeats_the_entity_error_and_keeps_its_info() -> None:
    # From 4.5 the summary repeats GPU 0's error (includeAllErrors): it is not told twice, but
    # the info line only the summary has is kept.
    rows = dcgm.parse_diag(json.loads(GB10_L2_ALLOWED.read_text()))["tests"]
    software = [r for r in rows if r["name"] == "software"]
    assert [(r["gpu"], r["severities"]) for r in software] == [(0, [5]), (None, [5])]
    assert software[1]["info"].startswith(SRAM) and PERSISTENCE not in software[1]["info"]
    memory, pcie = (r for r in rows if r["name"] in ("memory", "pcie"))
    assert memory["info"] == "Allocated 112427837082 bytes (87.5%)"
    # A 4.x info list is joined in order, one item after another.
    assert pcie["info"].count("; ") == 5 and pcie["info"].startswith("GPU to Host bandwidth:")


def test_gated_plugins_skip_without_a_reason() -> None:
    rows = dcgm.parse_diag(json.loads(GB10_L2_GATED.read_text()))["tests"]
    skipped = [(r["name"], r["gpu"], r["info"]) for r in rows if r["result"] == "Skip"]
    # The Skip summaries agree with the GPU rows and tell nothing more: no extra rows.
    assert skipped == [("memory", 0, None), ("pcie", 0, None)]


def test_dcgm_3_1_real_output_nulls_and_integer_gpu_ids() -> None:
    # DCGM 3.1 put a JSON null between tests and wrote a per-GPU result's "gpu_ids" as an int.
    parsed = dcgm.parse_diag(json.loads(V3_REAL_OUTPUT.read_text()))
    assert parsed["error"] is None
    rows = parsed["tests"]
    assert len(rows) == 9 + 8
    # Node-wide deployment checks name every GPU ("0,1,...,7"): they belong to none of them.
    assert {r["gpu"] for r in rows[:9]} == {None}
    assert [r["gpu"] for r in rows[9:]] == list(range(8))
    assert {r["result"] for r in rows} == {"Pass"}


def test_dcgm_3_info_strings_are_kept_whole() -> None:
    rows = dcgm.parse_diag(json.loads(VC_R3.read_text()))["tests"]
    power = next(r for r in rows if r["name"] == "Targeted Power")
    assert (power["gpu"], power["info"]) == (0, "GPU 0 GPU 0 power average:\t70 W")
    eud = next(r for r in rows if r["name"] == "EUD Test")
    assert (eud["result"], eud["gpu"], eud["info"]) == ("Skip", 0, None)
