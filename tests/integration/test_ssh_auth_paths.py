"""How hosts are reached: ~/.ssh/config, ssh-agent, a jump host, and a host dying mid-command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_dcctl, start_dcctl
from processes import process_alive, wait_for
from sshlab import (
    NODE_PYTHON,
    SilentListener,
    Sshd,
    SshLab,
    endpoint_host,
    frozen,
    known_hosts_lines,
    timeout_that_never_fires,
    write_inventory,
    write_known_hosts,
)

from dcctl.inventory.model import Host
from dcctl.transport.base import CommandResult, HostError
from dcctl.transport.ssh import SshContext, SshOptions, SshTransport
from dcctl.transport.ssh.session import GIVE_UP_AFTER_S


def check_json(tmp_path: Path, state: Path, inventory: Path, **env: str) -> Any:
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state), "--connect-timeout", "3", "--json",
         "check"],
        home=tmp_path / "home",
        env=env,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return result.code, result.json()


def test_ssh_config_supplies_hostname_port_user_and_key(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True)
    (ssh_dir / "config").write_text(
        "Host rack-node\n"
        f"  HostName {healthy_sshd.addresses[1]}\n"
        f"  Port {healthy_sshd.port}\n"
        f"  User {ssh_lab.user}\n"
        f"  IdentityFile {ssh_lab.client_key}\n"
    )
    inventory = write_inventory(
        tmp_path / "inv.yaml", [{"name": "rack-node", "python": NODE_PYTHON}]
    )
    code, document = check_json(tmp_path, state_dir, inventory)
    assert code == 0, document["hosts"][0]["error"]


@pytest.fixture
def agent_socket(tmp_path: Path, ssh_lab: SshLab) -> Iterator[str]:
    socket_path = str(tmp_path / "agent.sock")
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", socket_path], stdout=subprocess.DEVNULL)
    try:
        add = None
        for _ in range(100):  # ssh-add fails until the agent has bound its socket
            add = subprocess.run(
                ["ssh-add", str(ssh_lab.client_key)],
                env={**os.environ, "SSH_AUTH_SOCK": socket_path},
                capture_output=True,
                timeout=10,
            )
            if add.returncode == 0:
                break
            threading.Event().wait(0.05)
        assert add is not None and add.returncode == 0, add and add.stderr
        yield socket_path
    finally:
        agent.terminate()
        agent.wait(timeout=10)


@pytest.fixture(scope="module")
def wide_sshd(ssh_lab: SshLab, healthy_sshd: Sshd) -> Sshd:
    """16 more loopback hosts, for behaviour that only shows when many hosts run at once."""
    addresses = [f"127.0.1.{i}" for i in range(1, 17)]
    return ssh_lab.start_sshd(addresses, host_key=healthy_sshd.host_key)


def test_ssh_agent_keys_authenticate_many_hosts_at_once(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, wide_sshd: Sshd, agent_socket: str
) -> None:
    with (state_dir / "known_hosts").open("a") as known:
        known.writelines(line + "\n" for line in known_hosts_lines(wide_sshd))
    hosts = []
    for address in wide_sshd.addresses:
        host = {**ssh_lab.host_vars(wide_sshd, address), "name": address, "python": NODE_PYTHON}
        del host["key_file"]
        hosts.append(host)
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    code, document = check_json(tmp_path, state_dir, inventory, SSH_AUTH_SOCK=agent_socket)
    assert code == 0, [h["error"] for h in document["hosts"] if h["error"]]
    code, document = check_json(tmp_path, state_dir, inventory)
    assert code == 3
    assert {h["error"]["kind"] for h in document["hosts"]} == {"auth"}


def test_host_known_by_its_rsa_key_is_reached(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab
) -> None:
    rsa_key = tmp_path / "host_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa_key)],
                   check=True)  # fmt: skip
    rsa_sshd = ssh_lab.start_sshd(["127.0.0.11"], host_key=rsa_key)
    try:
        public = (tmp_path / "host_rsa.pub").read_text().split()[:2]
        with (state_dir / "known_hosts").open("a") as known:
            known.write(f"[127.0.0.11]:{rsa_sshd.port} {' '.join(public)}\n")
        host = {**ssh_lab.host_vars(rsa_sshd), "name": "rsa", "python": NODE_PYTHON}
        inventory = write_inventory(tmp_path / "inv.yaml", [host])
        code, document = check_json(tmp_path, state_dir, inventory)
    finally:
        rsa_sshd.stop()
    assert code == 0, document["hosts"][0]["error"]


def test_hosts_behind_a_jump_host_are_reached_through_it(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    jump_address, *behind = healthy_sshd.addresses
    hosts = [
        {**ssh_lab.host_vars(healthy_sshd, address), "name": f"behind{i}", "python": NODE_PYTHON}
        for i, address in enumerate(behind)
    ]
    jump = f"{ssh_lab.user}@{jump_address}:{healthy_sshd.port}"
    inventory = write_inventory(tmp_path / "inv.yaml", hosts, {"jump": jump})
    code, document = check_json(tmp_path, state_dir, inventory)
    assert code == 0, [h["error"] for h in document["hosts"]]

    bad_jump = write_inventory(
        tmp_path / "bad.yaml", hosts[:1], {"jump": f"{ssh_lab.user}@127.0.0.1:1"}
    )
    code, document = check_json(tmp_path, state_dir, bad_jump)
    assert code == 3
    error = document["hosts"][0]["error"]
    assert error["kind"] == "unreachable"
    assert "jump host" in error["message"]


def test_a_dead_jump_host_is_tried_once_for_all_hosts_behind_it(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    hosts = [
        {**ssh_lab.host_vars(healthy_sshd, address), "name": f"behind{i}", "python": NODE_PYTHON}
        for i, address in enumerate(healthy_sshd.addresses)
    ]
    with SilentListener("127.0.0.1") as bastion:
        jump = f"{ssh_lab.user}@{bastion.address}:{bastion.port}"
        inventory = write_inventory(tmp_path / "inv.yaml", hosts, {"jump": jump})
        code, document = check_json(tmp_path, state_dir, inventory)
        attempts = len(bastion.connections)
    assert code == 3
    assert {h["error"]["kind"] for h in document["hosts"]} == {"timeout"}
    assert all("jump host" in h["error"]["message"] for h in document["hosts"])
    assert attempts == 1


def test_host_dying_mid_command_is_unreachable_not_a_hang(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab, healthy_sshd: Sshd
) -> None:
    doomed = ssh_lab.start_sshd(["127.0.0.10"], host_key=healthy_sshd.host_key)
    pid_file = tmp_path / "slow.pid"
    script = tmp_path / "slow-python"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    script.chmod(0o755)
    with (state_dir / "known_hosts").open("a") as known:
        known.write(f"[127.0.0.10]:{doomed.port} {healthy_sshd.host_key_pub}\n")
    host = {**ssh_lab.host_vars(doomed), "name": "doomed", "python": str(script)}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    killer = threading.Thread(target=lambda: _kill_when(pid_file, doomed))
    killer.start()
    try:
        code, document = check_json(tmp_path, state_dir, inventory)
    finally:
        killer.join()
        doomed.stop()
    assert code == 3
    error = document["hosts"][0]["error"]
    assert error["kind"] == "unreachable"
    assert "lost" in error["message"]


def _kill_when(pid_file: Path, sshd: Sshd) -> None:
    for _ in range(600):
        if pid_file.exists():
            sshd.kill_all()
            return
        threading.Event().wait(0.05)


def test_a_server_stuck_checking_the_key_is_a_timeout_not_an_auth_failure(
    tmp_path: Path, ssh_lab: SshLab
) -> None:
    """sshd waiting on a hung AuthorizedKeysCommand (an LDAP lookup, say) never answers the
    key: one connect timeout, reported as such, not as a key to fix or every key tried."""
    stuck = ssh_lab.start_sshd(
        ["127.0.0.20"],
        extra_config=(
            "AuthorizedKeysFile none",
            "AuthorizedKeysCommand /bin/sleep 20",
            "AuthorizedKeysCommandUser root",
        ),
    )
    state = tmp_path / "state"
    state.mkdir()
    write_known_hosts(state / "known_hosts", [stuck])
    host = {"name": "stuck", **ssh_lab.host_vars(stuck, "127.0.0.20"), "python": NODE_PYTHON}
    code, document = check_json(tmp_path, state, write_inventory(tmp_path / "inv.yaml", [host]))
    assert code == 3
    error = document["hosts"][0]["error"]
    assert error["kind"] == "timeout", error
    assert "no answer to authentication" in error["message"]


def test_a_frozen_host_is_a_timeout_that_does_not_claim_a_kill(
    tmp_path: Path,
    state_dir: Path,
    ssh_lab: SshLab,
    healthy_sshd: Sshd,
    slow_python: tuple[Path, Path],
) -> None:
    """sshd stops answering mid-task (SIGSTOPped: a frozen host, a silent network). The
    controller gives up past the deadline and says so; it does not report a kill on the node
    it never saw. The node's own `timeout` does end the task there."""
    icy = ssh_lab.start_sshd(["127.0.0.12"], host_key=healthy_sshd.host_key)
    script, pid_file = slow_python
    with (state_dir / "known_hosts").open("a") as known:
        known.write(f"[127.0.0.12]:{icy.port} {healthy_sshd.host_key_pub}\n")
    host = {**ssh_lab.host_vars(icy), "name": "icy", "python": str(script)}
    inventory = write_inventory(tmp_path / "inv.yaml", [host])
    proc = start_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--connect-timeout", "5",
         "--json", "check", "--timeout", "8"],
        tmp_path / "home",
    )  # fmt: skip
    try:
        assert wait_for(pid_file.exists, 30), "the task never started on the node"
        with frozen(icy):
            stdout, stderr = proc.communicate(timeout=60)
        task_pid = int(pid_file.read_text())
        assert wait_for(lambda: not process_alive(task_pid), 10), "the node kept the task"
    finally:
        proc.kill()
        icy.stop()
    assert proc.returncode == 3, stderr
    error = json.loads(stdout)["hosts"][0]["error"]
    assert error["kind"] == "timeout", error
    assert "no answer from the host" in error["message"]
    assert "host frozen or network down" in error["message"]
    assert "killed" not in error["message"]


def test_a_host_hanging_up_before_its_banner_is_unreachable_not_hung(
    tmp_path: Path, state_dir: Path, ssh_lab: SshLab
) -> None:
    """A peer that closes at once (tcpwrappers, sshd over MaxStartups) is retried once and
    then unreachable; it is not "no SSH banner (host hung?)", which it never was."""
    listener = socket.create_server(("127.0.0.1", 0))
    hang_ups: list[int] = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            conn.close()
            hang_ups.append(1)

    server = threading.Thread(target=hang_up, daemon=True)
    server.start()
    try:
        host = endpoint_host(ssh_lab, "rude", "127.0.0.1", listener.getsockname()[1])
        code, document = check_json(
            tmp_path, state_dir, write_inventory(tmp_path / "i.yaml", [host])
        )
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in progress (Linux)
        listener.close()
        server.join(5)
    error = document["hosts"][0]["error"]
    assert code == 3
    assert error["kind"] == "unreachable", error
    assert "SSH handshake failed" in error["message"]
    assert len(hang_ups) == 2  # the first try and its one retry


# A task that prints without pause, forever.
PRINT_FOREVER = ["sh", "-c", "while :; do echo x; done"]


@pytest.fixture(scope="module")
def endless_printer(ssh_lab: SshLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A host whose node-side `timeout` never stops the task: only the controller's own
    deadline and Ctrl-C can end the wait."""
    watchdog_off = timeout_that_never_fires(tmp_path_factory.mktemp("node-bin"))
    sshd = ssh_lab.start_sshd(["127.0.0.36"], extra_config=(watchdog_off,))
    try:
        yield sshd
    finally:
        sshd.stop()


@pytest.fixture
def direct_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshContext]:
    """An SshContext reading no ~/.ssh, /etc/ssh or ssh-agent of this machine."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    context = SshContext(
        SshOptions(
            trusted_keys_file=tmp_path / "known_hosts",
            user_known_hosts=(),
            global_known_hosts=(),
            ssh_config=tmp_path / "no-ssh-config",
        )
    )
    try:
        yield context
    finally:
        context.close()


def lab_transport(
    ssh_lab: SshLab, sshd: Sshd, context: SshContext, cancel: threading.Event
) -> SshTransport:
    write_known_hosts(context.options.trusted_keys_file, [sshd])
    host = Host(name="printer", address=sshd.addresses[0], port=sshd.port, user=ssh_lab.user,
                key_file=str(ssh_lab.client_key))  # fmt: skip
    return SshTransport(host, context, cancel)


def run_bounded(
    transport: SshTransport, deadline: float, wait_s: float
) -> tuple[CommandResult | BaseException, float]:
    """transport.run(PRINT_FOREVER) in a thread: what it returned or raised, and how long it
    took. A run still going after `wait_s` fails the test (its connection is closed)."""
    outcome: list[CommandResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(transport.run(PRINT_FOREVER, deadline))
        except BaseException as exc:  # handed to the test thread, which judges it
            outcome.append(exc)

    began = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait_s)
    took = time.monotonic() - began
    if thread.is_alive():
        transport.close()
        thread.join(10)
        pytest.fail(f"a task printing without pause held the controller past {wait_s:g} s")
    return outcome[0], took


def test_a_task_printing_without_pause_still_meets_its_deadline(
    ssh_lab: SshLab, endless_printer: Sshd, direct_context: SshContext
) -> None:
    transport = lab_transport(ssh_lab, endless_printer, direct_context, threading.Event())
    transport.connect()
    try:
        outcome, took = run_bounded(transport, time.monotonic() + 2, wait_s=20)
    finally:
        transport.close()
    assert isinstance(outcome, HostError), outcome
    assert outcome.kind == "timeout"
    assert "still printing" in outcome.message
    assert 2 + GIVE_UP_AFTER_S - 0.5 < took < 2 + GIVE_UP_AFTER_S + 3


def test_ctrl_c_ends_a_task_printing_without_pause(
    ssh_lab: SshLab, endless_printer: Sshd, direct_context: SshContext
) -> None:
    cancel = threading.Event()
    transport = lab_transport(ssh_lab, endless_printer, direct_context, cancel)
    transport.connect()
    threading.Timer(1.0, cancel.set).start()
    try:
        outcome, took = run_bounded(transport, time.monotonic() + 120, wait_s=20)
    finally:
        transport.close()
    assert isinstance(outcome, HostError), outcome
    assert outcome.kind == "interrupted"
    assert took < 3
