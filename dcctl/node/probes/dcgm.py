"""DCGM active diagnostics: `dcgmi diag -r <level> --json`, one record per test and GPU.

Run only when the controller asks for a level (`dcctl check --dcgm N`): level 2 and 3 load
the GPUs for minutes. Under DCCTL_SYSROOT the recorded `dcgmi-diag.json` is read instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Collection
from typing import Any

from dcctl.node.sysroot import active_sysroot, recorded_output

DCGM_LEVELS = (1, 2, 3)
# Seconds `dcgmi diag -r N` may take. NVIDIA quotes seconds, ~2 min and ~15 min for levels
# 1-3; an 8-GPU node with a cold host engine takes longer. The controller must give the
# facts task at least this much time on top of the other probes.
DCGM_TIMEOUT_S = {1: 120, 2: 900, 3: 3600}
# After SIGTERM, dcgmi asks the host engine to stop the diagnostic; give it time to do so.
STOP_GRACE_S = 30
RECORDED_NAME = "dcgmi-diag.json"
NOT_INSTALLED = "dcgmi not found; install DCGM (datacenter-gpu-manager) to run diagnostics"

# The document's root key: DCGM 4.x writes "DCGM Diagnostic", 3.x "DCGM GPU Diagnostic".
_ROOT_KEYS = ("DCGM Diagnostic", "DCGM GPU Diagnostic")
_STATUSES = {"pass": "Pass", "fail": "Fail", "warn": "Warn", "skip": "Skip"}


class DcgmRunError(RuntimeError):
    """dcgmi ran but gave no usable document (timeout, crash, non-JSON output)."""


def _status(raw: Any) -> str:
    # Pass/Fail/Warn/Skip as DCGM spells them; anything else is kept for the evaluator to flag.
    text = str(raw or "").strip()
    return _STATUSES.get(text.lower(), text)


def _gpu_index(result: dict[str, Any]) -> int | None:
    """The GPU a result row is about: 4.x entity_id (GPU group only), 3.x gpu_id ("0" or 0)."""
    if "entity_id" in result:
        if result.get("entity_group", "GPU") != "GPU":
            return None  # a CPU or NVSwitch entity: its id is not a GPU index
        value = result["entity_id"]
    else:
        value = result.get("gpu_id", result.get("gpu_ids"))
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _warning_texts(result: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for warning in result.get("warnings") or []:
        if isinstance(warning, dict):
            # 3.x deployment tests put the text under "warnings" inside each entry.
            text = warning.get("warning", warning.get("warnings"))
        else:
            text = warning
        if text:
            texts.append(str(text).strip())
    return texts


def _info(result: dict[str, Any], skip: Collection[str] = ()) -> str | None:
    """Warnings first (why it failed), then info lines, as one sentence-per-item string.

    Lines in `skip` (already told by an entity row) are left out.
    """
    lines = [text for text in _warning_texts(result) if text not in skip]
    info = result.get("info")
    for text in info if isinstance(info, list) else [info]:
        if text and str(text).strip() not in skip:
            lines.append(str(text).strip())
    return "; ".join(lines) or None


def _severities(result: dict[str, Any]) -> list[int]:
    """The DCGM error severities (dcgmErrorSeverity_t) of a row's warnings, sorted, no repeats.

    DCGM 4.x writes a WARN result as "Fail" in JSON (dcgmi/Diag.cpp HelperDisplayDiagResult
    shows "Warn" only in the text table), so the severity is what tells a configuration
    finding (CONFIG) or one to watch (MONITOR) from a GPU to isolate or reset.
    """
    found: set[int] = set()
    for warning in result.get("warnings") or []:
        value = warning.get("error_severity") if isinstance(warning, dict) else None
        if isinstance(value, int) and not isinstance(value, bool):
            found.add(value)
    return sorted(found)


def _record(name: str, result: dict[str, Any], skip: Collection[str] = ()) -> dict[str, Any]:
    return {
        "name": name,
        "result": _status(result.get("status")),
        "gpu": _gpu_index(result),
        "info": _info(result, skip),
        "severities": _severities(result),
    }


def _test_records(test: dict[str, Any]) -> list[dict[str, Any]]:
    name = str(test.get("name") or "unnamed test")
    results = [r for r in test.get("results") or [] if isinstance(r, dict)]
    rows = [_record(name, r) for r in results]
    summary = test.get("test_summary")
    if isinstance(summary, dict):
        # 4.x: the summary carries the errors and info that belong to no entity (DCGM_FE_NONE);
        # from 4.5 it also repeats every entity's error (includeAllErrors). Keep it whenever it
        # tells something the entity rows do not: an error none of them carries, an info line,
        # or a verdict none of them has.
        told = {text for r in results for text in _warning_texts(r)}
        told |= {str(t).strip() for r in results for t in _listed(r.get("info"))}
        news = [w for w in summary.get("warnings") or [] if _text_of(w) not in told]
        overall = _record(name, summary, told)
        overall["gpu"] = None
        if news:
            # Its severities are those of the errors only it tells.
            overall["severities"] = _severities({"warnings": news})
        elif not overall["severities"]:
            # Before 4.5 a summary's "Fail" does not repeat the entity errors behind it (a GB10
            # on 4.2.3: persistence mode, CONFIG, on GPU 0 and a bare "Fail" summary with an info
            # line). A verdict the entity rows share is theirs, and so are its severities;
            # without them a configuration finding would be judged a failure here.
            same = [r for r in rows if r["result"] == overall["result"]]
            overall["severities"] = sorted({s for r in same for s in r["severities"]})
        if (
            not rows
            or news
            or overall["info"] is not None
            or (
                overall["result"] not in ("Pass", "Skip")
                and all(row["result"] != overall["result"] for row in rows)
            )
        ):
            rows.append(overall)
    return rows


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value] if value else []


def _text_of(warning: Any) -> str | None:
    texts = _warning_texts({"warnings": [warning]})
    return texts[0] if texts else None


def parse_diag(document: dict[str, Any]) -> dict[str, Any]:
    """A `dcgmi diag --json` document (3.x or 4.x) -> {tests: [row], error}.

    A row is {name, result, gpu, info, severities}: result as DCGM spells it (Pass, Fail,
    Warn, Skip), severities the dcgmErrorSeverity_t values of its warnings.

    A test yields one record per GPU row (gpu None for node-wide rows such as 3.x deployment
    checks).
    """
    root = next((document[key] for key in _ROOT_KEYS if key in document), None)
    if not isinstance(root, dict):
        return {"tests": [], "error": "dcgmi output has no DCGM diagnostic section"}
    tests: list[dict[str, Any]] = []
    for category in root.get("test_categories") or []:
        for test in category.get("tests") or []:
            if isinstance(test, dict):
                tests.extend(_test_records(test))
    error = root.get("runtime_error")
    if error is None and not tests:
        error = "dcgmi reported no test results"
    return {"tests": tests, "error": str(error).strip() if error is not None else None}


def parse_diag_output(text: str) -> dict[str, Any]:
    """dcgmi's stdout -> parse_diag's record; raises DcgmRunError when it holds no JSON object."""
    # dcgmi may print a notice before the document; the JSON object spans first { to last }.
    start, end = text.find("{"), text.rfind("}")
    try:
        document = json.loads(text[start : end + 1]) if 0 <= start < end else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        lines = text.strip().splitlines()
        raise DcgmRunError(f"dcgmi printed no JSON document: {lines[-1] if lines else '(empty)'}")
    return parse_diag(document)


def run_dcgmi(dcgmi: str, level: int, timeout_s: float) -> str:
    """stdout of `dcgmi diag -r <level> --json`; raises DcgmRunError on a timeout or no output.

    dcgmi exits non-zero when a test fails, so its status is not an error by itself.
    """
    proc = subprocess.Popen(
        [dcgmi, "diag", "-r", str(level), "--json"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        universal_newlines=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: dcgmi traps it and stops the diagnostic in the host engine,
        # which would otherwise keep loading the GPUs after we gave up.
        proc.terminate()
        try:
            proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise DcgmRunError(f"dcgmi diag -r {level} did not finish within {timeout_s:g} s") from None
    if not stdout.strip():
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
        raise DcgmRunError(f"dcgmi diag -r {level} printed nothing: {tail[0]}")
    return stdout


def _output(level: int) -> str | None:
    """The diag document's text, or None when DCGM is not installed (or was not recorded)."""
    if active_sysroot() is not None:
        return recorded_output(RECORDED_NAME)
    dcgmi = shutil.which("dcgmi")
    return None if dcgmi is None else run_dcgmi(dcgmi, level, DCGM_TIMEOUT_S[level])


def collect_dcgm(level: int | None) -> dict[str, Any]:
    """{"dcgm": {available, level, tests, error}} for a requested level; {} when none was."""
    if level is None:
        return {}
    record: dict[str, Any] = {"available": True, "level": level, "tests": [], "error": None}
    try:
        text = _output(level)
        if text is None:
            record.update(available=False, error=NOT_INSTALLED)
        else:
            record.update(parse_diag_output(text))
    except DcgmRunError as exc:
        record["error"] = str(exc)
    return {"dcgm": record}
