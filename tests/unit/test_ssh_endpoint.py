"""Where an SSH host is reached: inventory values first, ~/.ssh/config for the rest."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from dcctl.inventory.model import Host
from dcctl.transport.base import HostError
from dcctl.transport.ssh import SshContext, SshOptions
from dcctl.transport.ssh.options import KnownHostsFiles


def refused_endpoint() -> tuple[str, int]:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1", sock.getsockname()[1]


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


def resolver_for(tmp_path: Path, config_text: str) -> SshContext:
    config = tmp_path / "config"
    config.write_text(config_text)
    return SshContext(SshOptions(trusted_keys_file=tmp_path / "kh", ssh_config=config))


def test_known_hosts_files_and_host_key_alias_come_from_ssh_config(tmp_path: Path) -> None:
    context = resolver_for(
        tmp_path,
        "Host gpu1\n"
        "  HostKeyAlias rack1-gpu1\n"
        "  UserKnownHostsFile ~/.ssh/rack1_hosts /srv/keys/rack1\n"
        "  GlobalKnownHostsFile none\n"
        "Host gpu2\n"
        "  Port 2222\n",
    )
    endpoint = context.endpoint(Host(name="gpu1", address="gpu1", port=2222))
    # OpenSSH looks an alias up as it stands, with no [ ]:port.
    assert endpoint.known_hosts_name == "rack1-gpu1"
    assert endpoint.known_hosts_files == KnownHostsFiles(
        user=(Path.home() / ".ssh" / "rack1_hosts", Path("/srv/keys/rack1")), system=()
    )
    other = context.endpoint(Host(name="gpu2", address="gpu2"))
    assert other.known_hosts_name == "[gpu2]:2222"
    assert other.known_hosts_files == KnownHostsFiles()  # the run's own files


def test_known_hosts_paths_expand_ssh_config_tokens(tmp_path: Path) -> None:
    """A file per host (`%k`) is the documented way to use these; left unexpanded, the path
    would name no file and the host would pass for unknown."""
    context = resolver_for(
        tmp_path,
        "Host gpu1\n  HostKeyAlias rack1-gpu1\n"
        "  UserKnownHostsFile %d/kh.d/%k %h-%p-%r-%n%%\n"
        "Host gpu2\n  GlobalKnownHostsFile /etc/ssh/%C\n",
    )
    endpoint = context.endpoint(Host(name="gpu1", address="gpu1", port=2200, user="ops"))
    assert endpoint.known_hosts_files.user == (
        Path.home() / "kh.d" / "rack1-gpu1",
        Path("gpu1-2200-ops-gpu1%"),
    )
    with pytest.raises(HostError) as error:
        context.endpoint(Host(name="gpu2", address="gpu2"))
    assert error.value.kind == "host_key"
    assert "uses %C, which dcctl does not expand" in error.value.message


@pytest.mark.parametrize("port", ["ssh", "0", "70000", "22x"])
def test_a_bad_port_in_ssh_config_is_a_host_error_naming_it(tmp_path: Path, port: str) -> None:
    context = resolver_for(tmp_path, f"Host gpu1\n  Port {port}\n")
    with pytest.raises(HostError) as error:
        context.endpoint(Host(name="gpu1", address="gpu1"))
    assert error.value.kind == "unreachable"
    assert f"port {port!r} is not a number" in error.value.message
    assert "gpu1" in error.value.message


def test_a_bad_jump_host_port_is_a_host_error_naming_it(tmp_path: Path) -> None:
    context = resolver_for(tmp_path, "")
    target = context.endpoint(Host(name="gpu1", address="127.0.0.1"))
    for jump in ("admin@bastion:abc", "admin@[::1]:x"):
        with pytest.raises(HostError) as error:
            context.jump_channel(jump, target, None)
        assert error.value.kind == "unreachable"
        assert f"jump host {jump}: port" in error.value.message


def test_a_jump_host_with_its_own_proxy_jump_is_refused_not_bypassed(tmp_path: Path) -> None:
    """A chained jump (the bastion has a ProxyJump of its own in ~/.ssh/config) is not
    supported; connecting to the bastion directly would skip the hop the config asks for."""
    _, closed_port = refused_endpoint()
    context = resolver_for(
        tmp_path,
        f"Host bastion\n  HostName 127.0.0.1\n  Port {closed_port}\n  ProxyJump outer-gate\n",
    )
    target = context.endpoint(Host(name="gpu1", address="10.0.0.1"))
    with pytest.raises(HostError) as error:
        context.jump_channel("admin@bastion", target, None)
    assert error.value.kind == "unreachable"
    assert "its own ProxyJump (outer-gate)" in error.value.message
    assert "chained jump hosts are not supported" in error.value.message


def test_the_banner_timeout_message_is_the_same_on_every_path(tmp_path: Path) -> None:
    from dcctl.transport.ssh.errors import no_banner
    from dcctl.transport.ssh.sockets import await_banner

    endpoint = resolver_for(tmp_path, "").endpoint(Host(name="gpu1", address="127.0.0.1"))
    left, right = socket.socketpair()
    try:
        with pytest.raises(HostError) as error:
            await_banner(left, endpoint, 0.05, None)
    finally:
        left.close()
        right.close()
    expected = no_banner(endpoint.where, 0.05)
    assert (error.value.kind, error.value.message) == (expected.kind, expected.message)
    assert "gpu1 (127.0.0.1:22): no SSH banner within 0.05s" in expected.message


# --- Collecting a command's output (session.py) with a channel that never runs dry ---


class FloodingChannel:
    """Stands in for a paramiko Channel whose command prints faster than it is read, for
    `seconds`, and then exits. Deterministic where a real sshd depends on thread timing."""

    def __init__(self, seconds: float) -> None:
        self.stops_at = time.monotonic() + seconds
        self.eof_received = False
        self.closed = False

    @property
    def exit_status(self) -> int:
        return 0 if self.exit_status_ready() else -1

    def exit_status_ready(self) -> bool:
        return time.monotonic() > self.stops_at

    def recv_ready(self) -> bool:
        self.eof_received = self.exit_status_ready()
        return not self.eof_received

    def recv(self, size: int) -> bytes:
        return b"x" * min(size, 4096)

    def recv_stderr_ready(self) -> bool:
        return False

    def get_transport(self) -> FloodingChannel:
        return self

    def is_active(self) -> bool:
        return True


def collect(channel: FloodingChannel, deadline: float, cancel: threading.Event) -> tuple:
    from dcctl.transport.ssh.session import _collect

    began = time.monotonic()
    try:
        outcome: object = _collect(channel, deadline, "gpu1", cancel)  # type: ignore[arg-type]
    except HostError as exc:
        outcome = exc
    return outcome, time.monotonic() - began


def test_a_flood_of_output_does_not_outrun_the_deadline() -> None:
    from dcctl.transport.ssh.session import GIVE_UP_AFTER_S

    outcome, took = collect(FloodingChannel(20), time.monotonic() + 0.2, threading.Event())
    assert isinstance(outcome, HostError), outcome
    assert outcome.kind == "timeout"
    assert "still printing" in outcome.message
    assert took < 0.2 + GIVE_UP_AFTER_S + 2


def test_a_flood_of_output_does_not_outrun_ctrl_c() -> None:
    cancel = threading.Event()
    cancel.set()
    outcome, took = collect(FloodingChannel(10), time.monotonic() + 60, cancel)
    assert isinstance(outcome, HostError), outcome
    assert outcome.kind == "interrupted"
    assert took < 1


class StoppedMidReadChannel(FloodingChannel):
    """A channel whose connection a stop closes between the loop's look at the cancel flag and
    its look at the connection: the order a stop takes (flag set, then connections closed)."""

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__(60)
        self._cancel = cancel

    def recv_ready(self) -> bool:
        self._cancel.set()
        return False

    def is_active(self) -> bool:
        return not self._cancel.is_set()


def test_a_connection_closed_by_a_stop_is_interrupted_not_lost() -> None:
    cancel = threading.Event()
    outcome, _took = collect(StoppedMidReadChannel(cancel), time.monotonic() + 60, cancel)
    assert isinstance(outcome, HostError), outcome
    assert outcome.kind == "interrupted"
