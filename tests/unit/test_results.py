"""Run store and run document: atomic private files, statuses, exit codes."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest
from cli_runner import load_schema

from dcctl.evaluate.result import Result
from dcctl.fleet.outcome import HostOutcome
from dcctl.inventory.model import Host
from dcctl.results.document import RunMeta, exit_code, host_document, run_document
from dcctl.results.store import RunStore, host_file_name, new_run_id
from dcctl.transport.base import HostError

STARTED = datetime(2026, 11, 28, 13, 35, 1, tzinfo=timezone.utc)


def outcome(name: str, error: HostError | None = None) -> HostOutcome:
    return HostOutcome(Host(name=name, address="10.0.0.1"), None if error else {}, error, 1.2345)


def document_for(*host_documents: dict[str, object], interrupted: bool = False) -> dict:
    meta = RunMeta(new_run_id("check", STARTED), "check", "rack.yaml", STARTED)
    return run_document(meta, list(host_documents), interrupted, STARTED)


PASS = Result("kernel.version", "pass", "kernel 6.1 (expected >=5.15)", "6.1", ">=5.15")
WARN = Result("pcie.link", "warn", "PCIe gen 4 at idle", "4", "5")
FAIL = Result("driver.version", "fail", "NVIDIA driver not loaded", None, ">=550")


def test_run_id_names_time_and_command() -> None:
    assert new_run_id("check", STARTED).startswith("20261128T133501Z-check-")


def test_statuses_and_exit_codes() -> None:
    passed = host_document(outcome("a"), {}, [PASS, WARN])
    failed = host_document(outcome("b"), {}, [PASS, FAIL])
    broken = host_document(outcome("c", HostError("unreachable", "refused")), {}, [])
    assert (passed["status"], failed["status"], broken["status"]) == ("passed", "failed", "error")
    assert broken["error"] == {"kind": "unreachable", "message": "refused"}

    assert exit_code(document_for(passed)) == 0
    assert exit_code(document_for(passed), strict=True) == 1
    assert exit_code(document_for(passed, broken)) == 3
    assert exit_code(document_for(passed, broken, failed)) == 1
    assert exit_code(document_for(passed, interrupted=True)) == 130
    document = document_for(passed, broken, failed)
    assert document["status"] == "failed"
    assert document["summary"] == {"hosts": 3, "passed": 1, "failed": 1, "error": 1, "warnings": 1}
    jsonschema.validate(document, load_schema())


def test_schema_rejects_a_wrong_document() -> None:
    document = document_for(host_document(outcome("a"), {}, [PASS]))
    document["hosts"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, load_schema())


def test_store_writes_private_files_atomically(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "state", "20261128T133501Z-check-abcd")
    path = store.write_host("gpu001", {"name": "gpu001"})
    assert json.loads(path.read_text()) == {"name": "gpu001"}
    assert path.stat().st_mode & 0o777 == 0o600
    for directory in (tmp_path / "state", store.run_dir, store.run_dir / "hosts"):
        assert directory.stat().st_mode & 0o777 == 0o700
    store.write_host("gpu001", {"name": "gpu001", "again": True})
    assert [p.name for p in (store.run_dir / "hosts").iterdir()] == ["gpu001.json"]


@pytest.mark.parametrize("name", ["../../etc/passwd", "$(reboot)", "a/b", ".hidden", "x" * 300])
def test_host_file_names_stay_inside_the_run_dir(name: str) -> None:
    file_name = host_file_name(name)
    assert "/" not in file_name and not file_name.startswith(".")
    assert file_name.endswith(".json")
    assert len(file_name) <= 240


def test_distinct_unsafe_names_get_distinct_files() -> None:
    assert host_file_name("a/b") != host_file_name("a_b")
