"""`dcctl run PLAYBOOK`: the steps of a playbook under one run id and one run document, with
on_fail deciding whether a failed step ends the run, and a run killed outright leaving a
history that opens and says the run is incomplete."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jsonschema
from cli_runner import load_schema, run_dcctl, start_dcctl

from dcctl.playbook.builtin import audit_playbook
from dcctl.playbook.loader import load_playbook

REPO = Path(__file__).parents[2]


def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yaml"
    path.write_text(
        "all:\n  hosts:\n"
        f"    node1: {{connection: local, python: {sys.executable}}}\n"
        f"    node2: {{connection: local, python: {sys.executable}}}\n"
    )
    return path


def playbook(tmp_path: Path, on_fail: str) -> Path:
    """Two checks: the first expects a kernel this machine does not have."""
    path = tmp_path / "book.yaml"
    path.write_text(
        "name: two-checks\nsteps:\n"
        f"  - check: {{}}\n    name: strict\n    on_fail: {on_fail}\n"
        "    expect: {kernel: '>=99'}\n"
        "  - check: {}\n    name: plain\n"
    )
    return path


def run_json(tmp_path: Path, on_fail: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    args = ["-i", str(inventory(tmp_path)), "--state-dir", str(tmp_path / "state"), "--json",
            "run", str(playbook(tmp_path, on_fail))]  # fmt: skip
    result = run_dcctl(args, tmp_path)
    document = result.json()
    jsonschema.validate(document, load_schema())
    return result.code, document


def test_a_failed_step_with_on_fail_stop_ends_the_run_and_the_rest_is_skipped(
    tmp_path: Path,
) -> None:
    code, document = run_json(tmp_path, "stop")
    assert code == 1
    assert document["command"] == "run"
    assert document["playbook"].endswith("book.yaml")
    assert [(s["name"], s["status"]) for s in document["steps"]] == [
        ("strict", "failed"), ("plain", "skipped")
    ]  # fmt: skip
    runs = list((tmp_path / "state" / "runs").iterdir())
    assert [run.name for run in runs] == [document["run_id"]]  # one run for the playbook


def test_with_on_fail_continue_every_step_runs_and_each_result_names_its_step(
    tmp_path: Path,
) -> None:
    code, document = run_json(tmp_path, "continue")
    assert code == 1
    assert [(s["name"], s["status"]) for s in document["steps"]] == [
        ("strict", "failed"), ("plain", "passed")
    ]  # fmt: skip
    for host in document["hosts"]:
        kernel = [(r["step"], r["status"]) for r in host["results"] if r["id"] == "kernel.version"]
        assert kernel == [("strict", "fail")]  # judged only where the step expects it
        assert {r["step"] for r in host["results"]} == {"strict", "plain"}
        assert host["status"] == "failed"
    saved = tmp_path / "state" / "runs" / document["run_id"]
    assert json.loads((saved / "run.json").read_text()) == document
    host_file = json.loads((saved / "hosts" / "node1.json").read_text())
    assert host_file == document["hosts"][0]
    # The inventory and playbook as the run read them, kept beside it for its report.
    kept = saved / "sources"
    assert (kept / "playbook.yaml").read_text() == Path(document["playbook"]).read_text()
    assert (kept / "inventory.yaml").read_text() == inventory(tmp_path).read_text()


def test_a_bad_playbook_is_refused_with_its_line_before_anything_runs(tmp_path: Path) -> None:
    book = tmp_path / "bad.yaml"
    book.write_text("steps:\n  - check: {}\n  - bench: {benchmark: gemm, dtype: [bf17]}\n")
    result = run_dcctl(["--state-dir", str(tmp_path / "state"), "run", str(book)], tmp_path)
    assert result.code == 2
    (line,) = result.stderr.splitlines()
    assert f"{book}:3:" in line and "bf17" in line
    assert not (tmp_path / "state" / "runs").exists()


def test_the_built_in_audit_is_the_shipped_audit_playbook() -> None:
    shipped = load_playbook(str(REPO / "playbooks" / "audit.yaml"))
    built_in = audit_playbook()
    assert [(s.name, s.kind, s.options, s.expect, s.timeout_s, s.on_fail)
            for s in shipped.steps] == [
        (s.name, s.kind, s.options, s.expect, s.timeout_s, s.on_fail) for s in built_in.steps
    ]  # fmt: skip


def test_a_run_killed_outright_leaves_a_history_that_opens_with_the_run_incomplete(
    tmp_path: Path,
) -> None:
    """SIGKILL once the first step's hosts are on disk, while fio (the second step) runs."""
    book = tmp_path / "book.yaml"
    scratch = tmp_path / "scratch"
    book.write_text("steps:\n  - check: {}\n  - bench: {benchmark: fio}\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text(
        f"all:\n  hosts:\n    node1: {{connection: local, python: {sys.executable}, "
        f"scratch_dir: {scratch}}}\n"
    )
    state = tmp_path / "state"
    proc = start_dcctl(["-i", str(inv), "--state-dir", str(state), "run", str(book)], tmp_path)
    try:
        host_files = state / "runs"
        # Bounded wait for the first step's host file: written the moment the host landed.
        deadline = 600
        while not list(host_files.glob("*/hosts/node1.json")) and deadline:
            assert proc.poll() is None, proc.communicate()
            deadline -= 1
            proc_wait(proc, 0.1)
        assert deadline, "the first step never landed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    result = run_dcctl(["--state-dir", str(state), "--json", "history", "node1"], tmp_path)
    assert result.code == 0, result.stderr
    (run,) = result.json()["runs"]
    assert run["status"] == "incomplete"
    (run_dir,) = host_files.iterdir()
    assert not (run_dir / "run.json").exists()
    assert json.loads((run_dir / "hosts" / "node1.json").read_text())["status"] == "passed"


def proc_wait(proc: subprocess.Popen[str], seconds: float) -> None:
    """Wait for the process to end, at most `seconds`: a poll that does not spin."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=seconds)
