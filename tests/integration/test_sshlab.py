"""The SSH lab itself, exercised with a real client (paramiko)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
import yaml
from sshlab import (
    SilentListener,
    Sshd,
    SshLab,
    known_hosts_lines,
    refused_endpoint,
    write_inventory,
    write_known_hosts,
)


def _client(known_hosts: Path | None = None) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if known_hosts is not None:
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return client


def _connect(
    client: paramiko.SSHClient,
    lab: SshLab,
    address: str,
    port: int,
    banner_timeout: float | None = None,
) -> None:
    client.connect(
        address,
        port=port,
        username=lab.user,
        key_filename=str(lab.client_key),
        look_for_keys=False,
        allow_agent=False,
        timeout=5.0,
        banner_timeout=banner_timeout,
    )


@pytest.fixture
def client() -> Iterator[paramiko.SSHClient]:
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        yield c
    finally:
        c.close()


def test_healthy_addresses_run_commands_with_verified_host_keys(
    ssh_lab: SshLab, healthy_sshd: Sshd, lab_known_hosts: Path
) -> None:
    assert healthy_sshd.addresses == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    lines = lab_known_hosts.read_text().splitlines()
    assert lines == known_hosts_lines(healthy_sshd)
    assert lines[0] == f"[127.0.0.2]:{healthy_sshd.port} {healthy_sshd.host_key_pub}"
    for address in healthy_sshd.addresses:
        client = _client(lab_known_hosts)
        try:
            _connect(client, ssh_lab, address, healthy_sshd.port)
            server_key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
            assert f"{server_key.get_name()} {server_key.get_base64()}" == (
                healthy_sshd.host_key_pub
            )
            _stdin, stdout, _stderr = client.exec_command("echo ok", timeout=10)
            out = stdout.read().decode()
            assert stdout.channel.recv_exit_status() == 0
            # Only stdout lines: the login shell may source rc files that print to stderr.
            assert "ok" in out.splitlines()
        finally:
            client.close()


def test_unknown_host_key_is_rejected(ssh_lab: SshLab, healthy_sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    client = _client(empty)
    try:
        with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
            _connect(client, ssh_lab, healthy_sshd.addresses[0], healthy_sshd.port)
    finally:
        client.close()


def test_refused_endpoint(ssh_lab: SshLab) -> None:
    address, port = refused_endpoint("127.0.0.2")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=2).close()
    client = _client()
    try:
        with pytest.raises(
            (ConnectionRefusedError, paramiko.ssh_exception.NoValidConnectionsError)
        ):
            _connect(client, ssh_lab, address, port)
    finally:
        client.close()


def test_silent_listener_times_out_on_banner(ssh_lab: SshLab) -> None:
    with SilentListener("127.0.0.2") as silent:
        client = _client()
        started = time.monotonic()
        try:
            with pytest.raises(paramiko.SSHException, match="banner"):
                _connect(client, ssh_lab, silent.address, silent.port, banner_timeout=1.0)
        finally:
            client.close()
        elapsed = time.monotonic() - started
        assert 0.9 <= elapsed < 4.0, elapsed
        assert silent.connections, "the silent listener never accepted the connection"


def test_kill_all_drops_running_command(ssh_lab: SshLab, tmp_path: Path) -> None:
    sshd = ssh_lab.start_sshd(["127.0.0.5"])
    client = _client(write_known_hosts(tmp_path / "known_hosts", [sshd]))
    try:
        _connect(client, ssh_lab, "127.0.0.5", sshd.port)
        _stdin, stdout, _stderr = client.exec_command("sleep 30")
        channel = stdout.channel
        assert not channel.exit_status_ready()
        started = time.monotonic()
        sshd.kill_all()
        channel.settimeout(5.0)
        assert channel.recv(1024) == b""  # EOF: the connection dropped
        deadline = time.monotonic() + 5.0
        while not channel.closed and time.monotonic() < deadline:
            channel.status_event.wait(0.05)
        assert channel.closed
        assert time.monotonic() - started < 3.0
        assert not sshd.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.5", sshd.port), timeout=2).close()
    finally:
        client.close()


def test_distinct_host_keys_and_reuse(ssh_lab: SshLab, client: paramiko.SSHClient) -> None:
    first = ssh_lab.start_sshd(["127.0.0.6"])
    second = ssh_lab.start_sshd(["127.0.0.7"])
    reused = ssh_lab.start_sshd(["127.0.0.6"], host_key=first.host_key)
    try:
        assert len({first.port, second.port, reused.port}) == 3
        assert first.host_key_pub != second.host_key_pub
        assert reused.host_key_pub == first.host_key_pub
        _connect(client, ssh_lab, "127.0.0.7", second.port)
        key = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        assert f"{key.get_name()} {key.get_base64()}" == second.host_key_pub
    finally:
        for sshd in (first, second, reused):
            sshd.stop()
    assert not any(s.running for s in (first, second, reused))


def test_stop_ends_sessions_too(ssh_lab: SshLab, client: paramiko.SSHClient) -> None:
    sshd = ssh_lab.start_sshd(["127.0.0.8"])
    _connect(client, ssh_lab, "127.0.0.8", sshd.port)
    _stdin, stdout, _stderr = client.exec_command("sleep 30")
    sshd.kill()  # listener only: the session survives
    assert not stdout.channel.exit_status_ready()
    assert client.get_transport().is_active()  # type: ignore[union-attr]
    sshd.stop()  # ... until stop() reaps the orphaned session processes
    stdout.channel.settimeout(5.0)
    assert stdout.channel.recv(1024) == b""


def test_start_sshd_validates_addresses(ssh_lab: SshLab) -> None:
    with pytest.raises(ValueError, match="at most 16"):
        ssh_lab.start_sshd([f"127.0.1.{i}" for i in range(1, 18)])
    with pytest.raises(ValueError, match="loopback"):
        ssh_lab.start_sshd(["10.0.0.1"])


def test_write_inventory(ssh_lab: SshLab, healthy_sshd: Sshd, tmp_path: Path) -> None:
    hosts = [
        {"name": f"node{i}", **ssh_lab.host_vars(healthy_sshd, address)}
        for i, address in enumerate(healthy_sshd.addresses)
    ]
    path = write_inventory(tmp_path / "inv.yaml", hosts, {"python": "python3"})
    data = yaml.safe_load(path.read_text())
    assert data["all"]["vars"] == {"python": "python3"}
    assert data["all"]["hosts"]["node1"] == {
        "host": "127.0.0.3",
        "port": healthy_sshd.port,
        "user": ssh_lab.user,
        "key_file": str(ssh_lab.client_key),
    }
