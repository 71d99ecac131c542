"""DCGM diagnostic results folded into the host's results: one `dcgm.<test>` id per test.

A Fail or Warn row becomes its own Result naming the GPU; the Pass rows of a test fold into
one Result ("Pass on 8 GPUs"), and so do its Skip rows, so a level-3 run reads as a dozen
lines rather than a hundred.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from dcctl.evaluate.bounds import listed, shown, summary
from dcctl.evaluate.common import probe_error
from dcctl.evaluate.gpus import gpu_label, gpu_ref
from dcctl.evaluate.result import Result, Status

_FINDINGS: dict[str, Status] = {"Fail": "fail", "Warn": "warn"}
# dcgmErrorSeverity_t, dcgmlib/dcgm_errors.h (NVIDIA/DCGM): 0 NONE; 1 MONITOR "can perform
# workload, but needs to be monitored"; 2 ISOLATE "cannot perform workload, GPU should be
# isolated"; 3 UNKNOWN "not recognized"; 4 TRIAGE "should be triaged"; 5 CONFIG "can be
# configured" (DCGM_FR_PERSISTENCE_MODE is CONFIG in dcgm_errors.c); 6 RESET "drain and reset".
SEVERITY_NAMES = {
    0: "NONE",
    1: "MONITOR",
    2: "ISOLATE",
    3: "UNKNOWN",
    4: "TRIAGE",
    5: "CONFIG",
    6: "RESET",
}
# A "Fail" row whose every error has one of these severities leaves the GPU usable: DCGM's
# JSON spells a WARN result "Fail", so it is judged warn. Any other severity (ISOLATE, RESET,
# TRIAGE, UNKNOWN, one DCGM adds later) or none at all keeps the row a failure.
USABLE_SEVERITIES = frozenset({0, 1, 5})
_FOLDED: dict[str, Status] = {"Pass": "pass", "Skip": "skip"}
# DCGM runs about two dozen tests; a diag naming more is listed up to this, the rest counted.
MAX_DCGM_TESTS = 64


def slug(name: str) -> str:
    """ "Page Retirement/Row Remap" -> "page_retirement_row_remap"; "software" stays."""
    return re.sub(r"[^a-z0-9]+", "_", shown(name).lower()).strip("_") or "unnamed"


def _gpus_by_index(facts: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    return {gpu.get("index"): gpu for gpu in facts.get("gpus") or []}


def _severities(row: dict[str, Any]) -> list[int]:
    """The row's DCGM severities; anything not an int (a malformed payload) is left out."""
    values = row.get("severities")
    if not isinstance(values, list):
        return []
    return sorted({v for v in values if isinstance(v, int) and not isinstance(v, bool)})


def _row_result(row: dict[str, Any], gpus: dict[Any, dict[str, Any]]) -> Result:
    name, raw = shown(row.get("name")), shown(row.get("result"))
    index = row.get("gpu")
    gpu = gpus.get(index) if isinstance(index, int) else None
    where = (
        gpu_label(gpu) if gpu is not None else (f"GPU {shown(index)}" if index is not None else "")
    )
    info = shown(row["info"]) if row.get("info") else None
    severities = _severities(row)
    if raw in _FINDINGS:
        status, detail = _FINDINGS[raw], info or raw
        if raw == "Fail" and severities and set(severities) <= USABLE_SEVERITIES:
            status = "warn"
        if severities:
            named = ", ".join(SEVERITY_NAMES.get(v, f"severity {v}") for v in severities)
            detail += f" (DCGM {named})"
    else:
        status = "error"
        detail = f"unrecognised DCGM status {raw!r}" + (f" ({info})" if info else "")
    message = f"DCGM {name}: {where + ': ' if where else ''}{detail}"
    return Result(
        f"dcgm.{slug(name)}", status, message, raw, "Pass", gpu=gpu_ref(gpu) if gpu else None
    )


def _folded_result(rows: list[dict[str, Any]], raw: str) -> Result:
    name = shown(rows[0].get("name"))
    on_gpus = [row for row in rows if row.get("gpu") is not None]
    message = f"DCGM {name}: {raw}"
    if on_gpus:
        message += f" on {len(on_gpus)} GPU{'s' if len(on_gpus) != 1 else ''}"
    infos = sorted({str(row["info"]) for row in rows if row.get("info")})
    if infos and raw != "Pass":
        # Why a test skipped is worth a line; a passing test's figures are in the facts.
        message += f" ({listed(infos, len(infos), '; ')})"
    return Result(f"dcgm.{slug(name)}", _FOLDED[raw], message, raw, "Pass")


def _test_results(rows: list[dict[str, Any]], gpus: dict[Any, dict[str, Any]]) -> list[Result]:
    results = [_row_result(row, gpus) for row in rows if row.get("result") not in _FOLDED]
    for raw in _FOLDED:
        same = [row for row in rows if row.get("result") == raw]
        if same:
            results.append(_folded_result(same, raw))
    return results


def evaluate_dcgm(facts: dict[str, Any]) -> list[Result]:
    """Results for the DCGM run in facts["dcgm"]; [] when no DCGM level was requested."""
    if "dcgm" not in facts:
        return []
    dcgm = facts["dcgm"]
    if dcgm is None:
        message = probe_error(facts, "dcgm") or "DCGM diagnostic result missing"
        return [Result("dcgm.diag", "error", message)]
    level = dcgm.get("level")
    if not dcgm.get("available"):
        return [Result("dcgm.diag", "skip", f"DCGM diagnostic skipped: {shown(dcgm.get('error'))}")]
    results: list[Result] = []
    if dcgm.get("error"):
        message = f"DCGM diagnostic level {level} did not complete: {shown(dcgm['error'])}"
        results.append(Result("dcgm.diag", "error", message, None, level))
    gpus = _gpus_by_index(facts)
    by_test: dict[str, list[dict[str, Any]]] = {}
    for row in dcgm.get("tests") or []:
        by_test.setdefault(str(row.get("name")), []).append(row)
    tests = list(by_test.values())
    for rows in tests[:MAX_DCGM_TESTS]:
        results.extend(_test_results(rows, gpus))
    rest = Counter(r.status for rows in tests[MAX_DCGM_TESTS:] for r in _test_results(rows, gpus))
    if rest:
        results.append(summary("dcgm.diag", rest, "Pass"))
    return results
