"""SSH hosts dealt out to worker processes (`--workers`): same results, failures contained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
from cli_runner import load_schema, run_dcctl, start_dcctl
from processes import children_running, pids_with_env, process_alive, wait_for
from sshlab import write_inventory
from sysroots import hanging_sysroot

CONNECT_TIMEOUT_S = 2.0
WORKER_MARK = "dcctl.fleet.worker"


def start_check(tmp_path: Path, state_dir: Path, inventory: Path) -> subprocess.Popen[str]:
    return start_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--workers", "2", "--json", "check"],
        tmp_path / "home",
    )


def test_hosts_on_workers_are_reported_as_in_one_process(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    dead_hosts: list[dict[str, Any]],
) -> None:
    here = {"name": "here", "connection": "local"}
    inventory = write_inventory(tmp_path / "inv.yaml", [*healthy_hosts, *dead_hosts, here])
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--workers", "2",
         "--connect-timeout", str(CONNECT_TIMEOUT_S), "--json", "check"],
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.code == 3, result.stderr
    document = result.json()
    jsonschema.validate(document, load_schema())
    assert [h["name"] for h in document["hosts"]] == [
        "node1", "node2", "node3", "refused", "silent", "here"
    ]  # fmt: skip
    statuses = {h["name"]: (h["status"], (h["error"] or {}).get("kind")) for h in document["hosts"]}
    assert statuses == {
        "node1": ("passed", None), "node2": ("passed", None), "node3": ("passed", None),
        "refused": ("error", "unreachable"), "silent": ("error", "timeout"),
        "here": ("passed", None),
    }  # fmt: skip
    run_dir = state_dir / "runs" / document["run_id"]
    assert sorted(p.stem for p in (run_dir / "hosts").iterdir()) == sorted(statuses)


def test_a_worker_that_dies_fails_only_its_own_unfinished_hosts(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    slow_python: tuple[Path, Path],
) -> None:
    script, pid_file = slow_python
    # Dealt round-robin: node1 and node2 to the first worker, stuck to the second.
    hosts = [
        healthy_hosts[0],
        {**healthy_hosts[1], "name": "stuck", "python": str(script)},
        {**healthy_hosts[2], "name": "node2"},
    ]
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    proc = start_check(tmp_path, state_dir, inventory)
    runs = state_dir / "runs"
    try:
        assert wait_for(lambda: len(list(runs.glob("*/hosts/node*.json"))) == 2, 60), "no results"
        assert wait_for(pid_file.exists, 30), "stuck host never started its task"
        workers = children_running(proc.pid, WORKER_MARK)
        assert len(workers) == 2, workers
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert proc.returncode == 3, stderr
    hosts_by_name = {h["name"]: h for h in json.loads(stdout)["hosts"]}
    assert hosts_by_name["node1"]["status"] == "passed"
    assert hosts_by_name["node2"]["status"] == "passed"
    error = hosts_by_name["stuck"]["error"]
    assert error["kind"] == "runtime"
    assert "SSH worker process" in error["message"] and "exit code -9" in error["message"]


def test_ctrl_c_with_workers_keeps_finished_hosts_and_ends_node_tasks(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    sysroot = hanging_sysroot(tmp_path / "hanging-node")
    marker = f"DCCTL_SYSROOT={sysroot}"
    hanging = {**healthy_hosts[1], "name": "hanging", "env": {"DCCTL_SYSROOT": str(sysroot)}}
    inventory = write_inventory(tmp_path / "inv.yaml", [healthy_hosts[0], hanging])
    proc = start_check(tmp_path, state_dir, inventory)
    runs = state_dir / "runs"
    try:
        assert wait_for(lambda: any(runs.glob("*/hosts/node1.json")), 60), "node1 never finished"
        assert wait_for(lambda: pids_with_env(marker), 60), "node task never started"
        workers = children_running(proc.pid, WORKER_MARK)
        assert len(workers) == 2, workers
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)  # to the controller alone, as `kill -INT` would
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - interrupted_at < 8
    assert proc.returncode == 130, stderr
    document = json.loads(stdout)
    assert document["status"] == "interrupted"
    hosts_by_name = {h["name"]: h for h in document["hosts"]}
    assert hosts_by_name["node1"]["status"] == "passed"
    assert hosts_by_name["hanging"]["error"]["kind"] == "interrupted"
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the controller"
    assert wait_for(lambda: not any(process_alive(pid) for pid in workers), 10), "workers left"
