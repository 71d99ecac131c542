"""`dcctl check` end to end over real OpenSSH servers on loopback, healthy and faulty."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
from cli_runner import load_schema, run_dcctl, start_dcctl
from processes import pids_with_env, process_alive, wait_for
from sshlab import (
    NODE_PYTHON,
    Sshd,
    SshLab,
    lab_host,
    write_inventory,
)
from sysroots import FAULT_FINDINGS, H100_EXPECT, build_sysroot, hanging_sysroot

CONNECT_TIMEOUT_S = 2.0


def check(tmp_path: Path, state: Path, inventory: Path, *args: str) -> Any:
    return run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state),
         "--connect-timeout", str(CONNECT_TIMEOUT_S), *args],
        home=tmp_path / "home",
    )  # fmt: skip


def test_healthy_hosts_pass_and_document_matches_schema(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    inventory = write_inventory(
        tmp_path / "inv.yaml", healthy_hosts, {"expect": {"kernel": ">=3.10", "swap": "off"}}
    )
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    assert result.code == 0, result.stderr
    document = result.json()
    jsonschema.validate(document, load_schema())
    assert [h["name"] for h in document["hosts"]] == ["node1", "node2", "node3"]
    assert {h["status"] for h in document["hosts"]} == {"passed"}
    kernel = next(r for r in document["hosts"][0]["results"] if r["id"] == "kernel.version")
    assert kernel["status"] == "pass"
    assert kernel["observed"] == os.uname().release
    run_dir = state_dir / "runs" / document["run_id"]
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored == document
    assert sorted(p.name for p in (run_dir / "hosts").iterdir()) == [
        "node1.json", "node2.json", "node3.json"
    ]  # fmt: skip
    assert (run_dir / "run.json").stat().st_mode & 0o777 == 0o600
    assert run_dir.stat().st_mode & 0o777 == 0o700


def test_runtime_is_uploaded_once_into_a_private_cache(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    from dcctl.fleet.runtime import build_runtime

    node_cache = tmp_path / "node-cache"
    host = {**healthy_hosts[0], "env": {"XDG_CACHE_HOME": str(node_cache)}}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    assert check(tmp_path, state_dir, inventory, "check").code == 0
    cache = node_cache / "dcctl"
    runtime = cache / f"runtime-{build_runtime().digest}"
    # No temporary left behind; fio's version, learnt on the first run, is kept beside it.
    assert {p.name for p in cache.iterdir()} <= {runtime.name, "fio-version.json"}
    assert runtime.is_dir()
    shipped = zipfile.ZipFile(io.BytesIO(build_runtime().archive))
    for name in shipped.namelist():
        assert (runtime / name).read_bytes() == shipped.read(name)
    # Byte-compiled on the node by its own interpreter, so later tasks load bytecode.
    assert list((runtime / "dcctl" / "node" / "__pycache__").glob("main.*.pyc"))
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (runtime / "__main__.py").stat().st_mode & 0o777 == 0o600
    first_upload = runtime.stat().st_mtime_ns
    assert check(tmp_path, state_dir, inventory, "check").code == 0
    assert runtime.stat().st_mtime_ns == first_upload


def test_unreachable_and_silent_hosts_are_errors_not_hangs(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    dead_hosts: list[dict[str, Any]],
) -> None:
    inventory = write_inventory(tmp_path / "inv.yaml", healthy_hosts + dead_hosts)
    started = time.monotonic()
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    wall_s = time.monotonic() - started
    assert result.code == 3, result.stderr
    hosts = {h["name"]: h for h in result.json()["hosts"]}
    assert [hosts[f"node{i}"]["status"] for i in (1, 2, 3)] == ["passed"] * 3
    assert hosts["refused"]["error"]["kind"] == "unreachable"
    assert "connection refused" in hosts["refused"]["error"]["message"]
    assert hosts["silent"]["error"]["kind"] == "timeout", hosts["silent"]["error"]
    assert "no SSH banner" in hosts["silent"]["error"]["message"]
    # Bounded by the connect timeout, not by a TCP or SSH default of minutes; the margin is
    # interpreter start-up and the healthy hosts' work on a loaded 2-core machine.
    assert hosts["silent"]["duration_s"] < CONNECT_TIMEOUT_S + 5
    assert wall_s < CONNECT_TIMEOUT_S + 10


def test_wrong_client_key_is_an_auth_error(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_hosts: list[dict[str, Any]]
) -> None:
    stranger_key = tmp_path / "stranger"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger_key)], check=True
    )
    host = {**healthy_hosts[0], "key_file": str(stranger_key)}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    assert result.code == 3
    error = result.json()["hosts"][0]["error"]
    assert error["kind"] == "auth"
    assert "authentication failed" in error["message"]


def test_unknown_host_key_refused_unless_accepted_then_remembered(
    tmp_path: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    state = tmp_path / "fresh-state"
    inventory = write_inventory(tmp_path / "inv.yaml", healthy_hosts[:1])
    refused = check(tmp_path, state, inventory, "--json", "check")
    assert refused.code == 3
    error = refused.json()["hosts"][0]["error"]
    assert error["kind"] == "host_key"
    assert "unknown host key" in error["message"]
    assert "--accept-new-host-keys" in error["message"]

    accepted = check(tmp_path, state, inventory, "--accept-new-host-keys", "check")
    assert accepted.code == 0, accepted.stdout + accepted.stderr
    assert (state / "known_hosts").stat().st_mode & 0o777 == 0o600
    assert check(tmp_path, state, inventory, "check").code == 0


def test_changed_host_key_is_always_refused(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    # Another sshd, with a new key, answering where the trusted key was recorded.
    impostor = ssh_lab.start_sshd(["127.0.0.9"], host_key=ssh_lab.new_host_key())
    try:
        with (state_dir / "known_hosts").open("a") as known:
            known.write(f"[127.0.0.9]:{impostor.port} {healthy_sshd.host_key_pub}\n")
        host = lab_host(ssh_lab, impostor, "moved", "127.0.0.9")
        inventory = write_inventory(tmp_path / "inv.yaml", [host])
        result = check(tmp_path, state_dir, inventory, "--json", "--accept-new-host-keys", "check")
    finally:
        impostor.stop()
    assert result.code == 3
    error = result.json()["hosts"][0]["error"]
    assert error["kind"] == "host_key"
    assert "CHANGED" in error["message"]


def test_missing_python_names_the_interpreter(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    host = {**healthy_hosts[0], "python": "/opt/nowhere/bin/python3"}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    assert result.code == 3
    error = result.json()["hosts"][0]["error"]
    assert error["kind"] == "runtime"
    assert "/opt/nowhere/bin/python3" in error["message"]


def test_a_node_flooding_stdout_still_yields_its_payload(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    """A login script gone wrong prints 40 MB before the task: the controller keeps only the
    tail, which still ends with the payload."""
    from dcctl.transport.base import STDOUT_KEPT_BYTES

    noisy_python = tmp_path / "noisy-python"
    noisy_python.write_text(
        "#!/bin/sh\n"
        f"head -c {STDOUT_KEPT_BYTES * 2 + 12345} /dev/zero | tr '\\0' x\n"
        "echo\n"
        f'exec {NODE_PYTHON} "$@"\n'
    )
    noisy_python.chmod(0o755)
    host = {**healthy_hosts[0], "python": str(noisy_python)}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    assert result.code == 0, result.stderr
    assert result.json()["hosts"][0]["status"] == "passed"


def test_command_past_deadline_is_killed_on_the_node(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    slow_python: tuple[Path, Path],
) -> None:
    script, pid_file = slow_python
    host = {**healthy_hosts[0], "python": str(script)}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    # Long enough for a login shell to start the task even on a loaded machine.
    result = check(tmp_path, state_dir, inventory, "--json", "check", "--timeout", "5")
    assert result.code == 3
    error = result.json()["hosts"][0]["error"]
    assert error["kind"] == "timeout"
    pid = int(pid_file.read_text())
    assert wait_for(lambda: not process_alive(pid), timeout_s=5), "task left running on the node"


def test_ctrl_c_keeps_finished_hosts_and_exits_130(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    slow_python: tuple[Path, Path],
) -> None:
    script, pid_file = slow_python
    hosts = [healthy_hosts[0], {**healthy_hosts[1], "name": "stuck", "python": str(script)}]
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    proc = start_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--json", "check"], tmp_path / "home"
    )
    try:
        runs = state_dir / "runs"
        assert wait_for(lambda: any(runs.glob("*/hosts/node1.json")), 60), "node1 never finished"
        assert wait_for(pid_file.exists, 30), "stuck host never started its task"
        interrupted_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - interrupted_at < 6
    assert proc.returncode == 130, stderr
    document = json.loads(stdout)
    assert document["status"] == "interrupted"
    run_dir = next(runs.iterdir())
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    hosts_by_name = {h["name"]: h for h in document["hosts"]}
    assert hosts_by_name["node1"]["status"] == "passed"
    assert hosts_by_name["stuck"]["error"]["kind"] == "interrupted"


def test_shell_metacharacters_in_inventory_are_never_executed(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    canary_dir = tmp_path / "canaries"
    canary_dir.mkdir()
    touch = f"touch {canary_dir}/CANARY"
    # Host names may not hold spaces; ${IFS} is the shell's space.
    name_touch = f"touch${{IFS}}{canary_dir}/CANARY"
    evil = {
        **lab_host(ssh_lab, healthy_sshd, "x", healthy_sshd.addresses[0]),
        "name": f"evil$({name_touch}1)`{name_touch}2`;{name_touch}3",
        "env": {"PAYLOAD": f"$({touch}4); `{touch}5`; {touch}6 #"},
        "scratch_dir": f"/var/tmp/dcctl;{touch}7",
    }
    local_evil = {
        "name": f"local$({name_touch}8)",
        "connection": "local",
        "python": NODE_PYTHON,
        "env": {"PAYLOAD": f"'; {touch}9; '"},
    }
    inventory = write_inventory(tmp_path / "inv.yaml", [evil, local_evil])
    result = check(tmp_path, state_dir, inventory, "--json", "check")
    assert result.code == 0, result.stdout + result.stderr
    assert list(canary_dir.iterdir()) == []
    assert {h["status"] for h in result.json()["hosts"]} == {"passed"}


FLEET_FINDINGS = ("drift.", "fleet.outlier.", "baseline")


def test_recorded_nodes_are_judged_end_to_end_over_ssh(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    # One real sshd host per recorded node: the healthy H100 and each fault laid over it.
    nodes: dict[str, Path] = {"healthy": build_sysroot(tmp_path / "trees")}
    for fault in FAULT_FINDINGS:
        nodes[fault] = build_sysroot(tmp_path / "trees", fault)
    hosts = [
        {**healthy_hosts[i % len(healthy_hosts)], "name": name,
         "env": {"DCCTL_SYSROOT": str(root)}}
        for i, (name, root) in enumerate(nodes.items())
    ]  # fmt: skip
    inventory = write_inventory(tmp_path / "inv.yaml", hosts, {"expect": H100_EXPECT})
    result = check(tmp_path, state_dir, inventory, "--json", "check", "--dcgm", "1")
    assert result.code == 1, result.stderr
    by_name = {h["name"]: h for h in result.json()["hosts"]}
    healthy = by_name["healthy"]
    assert healthy["status"] == "passed", [r for r in healthy["results"] if r["status"] != "pass"]
    assert healthy["facts"]["driver"] == "550.54.15"
    assert len(healthy["facts"]["gpus"]) == 8
    for fault, expected in FAULT_FINDINGS.items():
        host = by_name[fault]
        # What the host's own facts say; comparisons with the other hosts (drift: a VBIOS
        # unlike the fleet's) are the fleet's findings, not the recorded fault's.
        found = {r["id"]: r["status"] for r in host["results"]
                 if r["status"] != "pass" and not r["id"].startswith(FLEET_FINDINGS)}  # fmt: skip
        assert found == expected, fault
        # Warnings alone leave a host passed; one failure fails it.
        assert host["status"] == ("failed" if "fail" in expected.values() else "passed"), fault
    # The one node whose VBIOS set differs from every other H100's is also told so.
    drifted = {h["name"] for h in by_name.values()
               for r in h["results"] if r["id"] == "drift.vbios"}  # fmt: skip
    assert drifted == {"vbios-mismatch"}


def test_ctrl_c_ends_the_node_task_too(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    sysroot = hanging_sysroot(tmp_path / "hanging-node")
    marker = f"DCCTL_SYSROOT={sysroot}"
    host = {**healthy_hosts[0], "name": "hanging", "env": {"DCCTL_SYSROOT": str(sysroot)}}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    proc = start_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--json", "check"], tmp_path / "home"
    )
    try:
        assert wait_for(lambda: pids_with_env(marker), 60), "node task never started"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the controller"


def test_a_silent_host_does_not_hold_a_forks_slot_while_it_connects(
    tmp_path: Path,
    state_dir: Path,
    healthy_hosts: list[dict[str, Any]],
    dead_hosts: list[dict[str, Any]],
) -> None:
    """With one slot and a silent host first in line, the healthy hosts still run (and land)
    while it waits out its connect timeout: dead hosts cost a run one timeout, not one each."""
    silent = next(host for host in dead_hosts if host["name"] == "silent")
    inventory = write_inventory(tmp_path / "inv.yaml", [silent, *healthy_hosts[:2]])
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--forks", "1",
         "--connect-timeout", "5", "--json", "check"],
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.code == 3, result.stderr
    statuses = {h["name"]: h["status"] for h in result.json()["hosts"]}
    assert statuses == {"silent": "error", "node1": "passed", "node2": "passed"}
    files = state_dir / "runs" / result.json()["run_id"] / "hosts"
    landed = sorted(files.iterdir(), key=lambda path: path.stat().st_mtime_ns)
    assert [path.stem for path in landed] == ["node1", "node2", "silent"]
