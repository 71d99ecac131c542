"""Where an SSH host is reached: inventory values first, ~/.ssh/config for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcctl.inventory.model import Host
from dcctl.transport.ssh import SshContext, SshOptions


@pytest.fixture
def context(tmp_path: Path) -> SshContext:
    config = tmp_path / "config"
    config.write_text(
        "Host gpu*\n"
        "  HostName %h.rack1.example.com\n"
        "  User ops\n"
        "  Port 2222\n"
        "  IdentityFile ~/.ssh/rack1\n"
        "  ProxyJump admin@bastion\n"
    )
    return SshContext(SshOptions(trusted_keys_file=tmp_path / "kh", ssh_config=config))


def test_ssh_config_fills_what_the_inventory_leaves_open(context: SshContext) -> None:
    endpoint = context.endpoint(Host(name="gpu001", address="gpu001"))
    assert endpoint.address == "gpu001.rack1.example.com"
    assert (endpoint.user, endpoint.port, endpoint.jump) == ("ops", 2222, "admin@bastion")
    assert endpoint.identity_files == (str(Path.home() / ".ssh" / "rack1"),)
    assert endpoint.known_hosts_name == "[gpu001.rack1.example.com]:2222"


def test_inventory_values_win_over_ssh_config(context: SshContext) -> None:
    host = Host(name="gpu001", address="gpu001", port=22, user="root", key_file="/k", jump="j@x")
    endpoint = context.endpoint(host)
    assert (endpoint.user, endpoint.port, endpoint.jump) == ("root", 22, "j@x")
    assert endpoint.identity_files == ("/k",)
    assert endpoint.known_hosts_name == "gpu001.rack1.example.com"


def test_hosts_outside_the_config_get_ssh_defaults(context: SshContext) -> None:
    endpoint = context.endpoint(Host(name="db1", address="10.0.0.5"))
    assert (endpoint.address, endpoint.port, endpoint.jump) == ("10.0.0.5", 22, None)


def test_waiting_works_on_descriptors_above_select_limit() -> None:
    import os
    import socket

    from dcctl.transport.ssh.sockets import wait_ready

    left, right = socket.socketpair()
    # select() refuses any descriptor at or above 1,024.
    high_sock = socket.socket(fileno=os.dup2(left.fileno(), 4000))
    try:
        assert high_sock.fileno() == 4000
        assert not wait_ready(high_sock, 0.01)
        right.send(b"x")
        assert wait_ready(high_sock, 1.0)
        assert wait_ready(high_sock, 0.01, writable=True)
    finally:
        high_sock.close()
        left.close()
        right.close()
