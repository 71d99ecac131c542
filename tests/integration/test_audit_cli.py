"""`dcctl audit` as cron runs it: quiet unless something changed, locked against overlap, a
textfile node_exporter can read, and Slurm drain/resume through a real slurmctld."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_runner import run_dcctl, start_dcctl
from prometheus_client.parser import text_string_to_metric_families
from slurm_lab import SlurmLab

from dcctl.audit.slurm_parse import parse_nodes

# A check-only audit: the built-in one adds a GEMM (torch), which these tests do not need.
CHECK_ONLY = "name: quick-audit\nsteps:\n  - check: {}\n    on_fail: continue\n"


def write_inventory(path: Path, failing: dict[str, str]) -> Path:
    """Three local hosts; a host in `failing` expects the kernel version given, which this
    machine's kernel does not meet."""
    lines = ["all:", "  hosts:"]
    for name in ("audit1", "audit2", "audit3"):
        lines += [f"    {name}:", "      connection: local", f"      python: {sys.executable}"]
        if name in failing:
            lines.append(f"      expect: {{kernel: '{failing[name]}'}}")
    path.write_text("\n".join(lines) + "\n")
    return path


class Audit:
    """One state dir and one inventory file, audited again and again."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.home = tmp_path
        self.state = tmp_path / "state"
        self.inventory = tmp_path / "inv.yaml"
        self.playbook = tmp_path / "audit.yaml"
        self.playbook.write_text(CHECK_ONLY)
        self.env = env

    def run(self, failing: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
        write_inventory(self.inventory, failing)
        args = ["-i", str(self.inventory), "--state-dir", str(self.state), "audit"]
        result = run_dcctl([*args, "--playbook", str(self.playbook), *options], self.home,
                           env=self.env)  # fmt: skip
        return subprocess.CompletedProcess(args, result.code, result.stdout, result.stderr)


def test_two_audits_with_nothing_new_print_nothing_and_a_new_failure_prints_one_line(
    tmp_path: Path,
) -> None:
    audit = Audit(tmp_path)
    first = audit.run({"audit2": ">=99"})
    assert first.returncode == 1, first.stderr
    assert first.stdout.splitlines() == [first.stdout.splitlines()[0]]
    assert first.stdout.startswith("audit2: new FAIL: kernel.version")

    second = audit.run({"audit2": ">=99"})
    assert (second.returncode, second.stdout, second.stderr) == (1, "", "")

    third = audit.run({"audit2": ">=99", "audit3": ">=98"})
    assert third.returncode == 1
    (line,) = third.stdout.splitlines()
    assert line.startswith("audit3: new FAIL: kernel.version")

    fourth = audit.run({"audit3": ">=98"})
    assert fourth.returncode == 1
    (line,) = fourth.stdout.splitlines()
    assert line.startswith("audit2: recovered: kernel.version")


def test_the_textfile_parses_as_prometheus_exposition(tmp_path: Path) -> None:
    audit = Audit(tmp_path)
    textfile = tmp_path / "collector" / "dcctl.prom"
    textfile.parent.mkdir()
    result = audit.run({"audit2": ">=99"}, "--textfile", str(textfile))
    assert result.returncode == 1, result.stderr

    families = {f.name: f for f in text_string_to_metric_families(textfile.read_text())}
    kernel = {
        s.labels["host"]: s.value
        for s in families["dcctl_check_status"].samples
        if s.labels["check"] == "kernel.version"
    }
    assert kernel == {"audit2": 2.0}  # fail; the others had no expectation to judge
    up = {s.labels["host"]: s.value for s in families["dcctl_host_up"].samples}
    assert up == {"audit1": 1.0, "audit2": 1.0, "audit3": 1.0}
    (last,) = families["dcctl_last_run_timestamp_seconds"].samples
    assert last.value > 1.7e9
    (duration,) = families["dcctl_audit_duration_seconds"].samples
    assert duration.value > 0
    assert [p.name for p in textfile.parent.iterdir()] == ["dcctl.prom"]  # no temp file left


def test_a_second_audit_while_one_runs_exits_busy_at_once(tmp_path: Path) -> None:
    """The first audit holds the lock while it reads its inventory from a FIFO nobody has
    written yet; the second, started meanwhile, exits 5 with one line and runs nothing."""
    fifo = tmp_path / "inv.fifo"
    os.mkfifo(fifo)
    state = tmp_path / "state"
    playbook = tmp_path / "audit.yaml"
    playbook.write_text(CHECK_ONLY)
    args = ["-i", str(fifo), "--state-dir", str(state), "audit", "--playbook", str(playbook)]
    first = start_dcctl(args, tmp_path)
    try:
        lock = state / "audit.lock"
        # The first audit writes its pid into the lock once it holds it; the open below
        # blocks until the first opens the FIFO, which it does only after taking the lock.
        with open(fifo, "w") as inventory:
            assert f"pid {first.pid}" in lock.read_text()
            second = run_dcctl(args, tmp_path, timeout=30)
            assert second.code == 5
            assert second.stdout == ""
            (line,) = second.stderr.splitlines()
            assert "another audit is running" in line and f"pid {first.pid}" in line
            inventory.write(write_inventory(tmp_path / "real.yaml", {}).read_text())
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert out == ""


def test_history_lists_the_audits(tmp_path: Path) -> None:
    audit = Audit(tmp_path)
    audit.run({})
    audit.run({})
    result = run_dcctl(["--state-dir", str(audit.state), "--json", "history"], tmp_path)
    assert result.code == 0, result.stderr
    runs = result.json()["runs"]
    assert [run["command"] for run in runs] == ["audit", "audit"]
    assert {run["status"] for run in runs} == {"passed"}


def slurm_state(lab: SlurmLab, node: str) -> tuple[bool, str | None]:
    done = lab.scontrol("show", "node", "-o", node)
    assert done.returncode == 0, done.stderr
    found = parse_nodes(done.stdout)[node]
    return found.drained, found.reason


def test_drain_failing_hosts_and_resume_them_never_a_node_drained_by_hand(
    tmp_path: Path, slurm_lab: SlurmLab
) -> None:
    audit = Audit(tmp_path, env={"SLURM_CONF": str(slurm_lab.conf)})
    hand = slurm_lab.scontrol(
        "update", "NodeName=audit3", "State=DRAIN", "Reason=bad fan, ticket 4711"
    )
    assert hand.returncode == 0, hand.stderr

    dry = audit.run({"audit2": ">=99", "audit3": ">=99"}, "--drain", "--dry-run")
    assert "slurm: would drain audit2" in dry.stdout
    assert slurm_state(slurm_lab, "audit2") == (False, None)

    failing = audit.run({"audit2": ">=99", "audit3": ">=99"}, "--drain")
    assert failing.returncode == 1, failing.stderr
    drained, reason = slurm_state(slurm_lab, "audit2")
    assert drained and reason is not None and reason.startswith("dcctl: kernel.version")
    assert "slurm: drained audit2" in failing.stdout
    assert slurm_state(slurm_lab, "audit3") == (True, "bad fan, ticket 4711")
    assert slurm_state(slurm_lab, "audit1") == (False, None)

    again = audit.run({"audit2": ">=99", "audit3": ">=99"}, "--drain")
    assert (again.returncode, again.stdout) == (1, "")  # drained already: nothing new to say
    assert slurm_state(slurm_lab, "audit2") == (drained, reason)

    passing = audit.run({}, "--drain")
    assert passing.returncode == 0, passing.stderr
    assert slurm_state(slurm_lab, "audit2") == (False, None)
    assert "slurm: resumed audit2" in passing.stdout
    assert slurm_state(slurm_lab, "audit3") == (True, "bad fan, ticket 4711")


@pytest.mark.parametrize("options", [["--dry-run"]])
def test_dry_run_without_drain_is_a_usage_error(tmp_path: Path, options: list[str]) -> None:
    result = run_dcctl(["--state-dir", str(tmp_path / "s"), "audit", *options], tmp_path)
    assert result.code == 2
    assert "--drain" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_mid_audit_keeps_the_partial_run_and_touches_neither_textfile_nor_slurm(
    tmp_path: Path, signum: int
) -> None:
    """Stopped while fio (the second step) runs, once the check step's host has landed."""
    playbook = tmp_path / "audit.yaml"
    playbook.write_text("steps:\n  - check: {}\n  - bench: {benchmark: fio}\n")
    inv = tmp_path / "inv.yaml"
    inv.write_text(f"all:\n  hosts:\n    audit1: {{connection: local, python: {sys.executable}, "
                   f"scratch_dir: {tmp_path / 'scratch'}}}\n")  # fmt: skip
    state, textfile = tmp_path / "state", tmp_path / "dcctl.prom"
    args = ["-i", str(inv), "--state-dir", str(state), "audit", "--playbook", str(playbook),
            "--textfile", str(textfile), "--drain"]  # fmt: skip
    proc = start_dcctl(args, tmp_path)
    try:
        landed = wait_for(lambda: any(state.glob("runs/*/hosts/audit1.json")), proc)
        assert landed, "the check step never landed"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    assert out == ""
    assert "audit stopped before the end" in err
    assert not textfile.exists()
    (run_json,) = state.glob("runs/*/run.json")
    document = json.loads(run_json.read_text())
    assert document["status"] == "interrupted"
    # The signal lands while fio runs, or just before its step begins (while the check step is
    # compared with the history): either way the second step did not run to its end.
    check_step, fio_step = document["steps"]
    assert check_step["status"] == "passed"
    assert fio_step["status"] in ("interrupted", "skipped")
    assert not list((tmp_path / "scratch").glob("**/*.fio*"))  # fio's files removed


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str]) -> bool:
    """True once `condition` holds, False if the process ended first or 60 s passed; waits
    on the process between looks, so it never spins."""
    for _ in range(600):
        if condition():
            return True
        try:
            proc.wait(timeout=0.1)
            return condition()
        except subprocess.TimeoutExpired:
            continue
    return False
