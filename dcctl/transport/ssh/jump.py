"""ProxyJump: one shared connection per jump host, and a channel through it per target."""

from __future__ import annotations

import dataclasses
import threading

import paramiko

from dcctl.transport.base import HostError
from dcctl.transport.ssh.endpoint import Endpoint, EndpointResolver, split_host_port
from dcctl.transport.ssh.handshake import Handshaker
from dcctl.transport.ssh.sockets import await_banner, tcp_connect


class JumpHosts:
    """Connections to jump hosts, opened on first use and shared by every host behind them."""

    def __init__(self, resolver: EndpointResolver, handshaker: Handshaker, timeout_s: float):
        self._resolver = resolver
        self._handshaker = handshaker
        self._timeout_s = timeout_s
        self._jumps: dict[str, paramiko.Transport | HostError] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def channel(
        self, jump: str, target: Endpoint, cancel: threading.Event | None
    ) -> paramiko.Channel:
        """A direct-tcpip channel to target through one shared connection to the jump host."""
        if "," in jump:
            raise HostError("unreachable", f"jump {jump!r}: only one jump host is supported")
        transport = self._connection(jump, target, cancel)
        try:
            return transport.open_channel(
                "direct-tcpip",
                (target.address, target.port),
                ("127.0.0.1", 0),
                timeout=self._timeout_s,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise HostError(
                "unreachable",
                f"jump host {jump} cannot reach {target.address}:{target.port}: {exc}",
            ) from exc

    def _connection(
        self, jump: str, target: Endpoint, cancel: threading.Event | None
    ) -> paramiko.Transport:
        with self._lock:
            lock = self._locks.setdefault(jump, threading.Lock())
        with lock:
            known = self._jumps.get(jump)
            # A dead bastion is tried once per run, not once per host behind it.
            if isinstance(known, HostError):
                raise HostError(known.kind, known.message)
            if known is None or not known.is_active():
                try:
                    known = self._connect(jump, target.identity_files, cancel)
                except HostError as exc:
                    if exc.kind != "interrupted":
                        self._jumps[jump] = exc
                    raise
                self._jumps[jump] = known
            return known

    def _connect(
        self, jump: str, target_identity_files: tuple[str, ...], cancel: threading.Event | None
    ) -> paramiko.Transport:
        user, _, hostport = jump.rpartition("@")
        address, port = split_host_port(hostport, f"jump host {jump}")
        # Named "jump host ..." so every connect, key or auth error says which hop failed.
        endpoint = self._resolver.resolve(
            f"jump host {jump}", address, port, user or None, None, None
        )
        if endpoint.jump:
            # Connecting straight to the bastion would bypass the hop ~/.ssh/config asks for.
            raise HostError(
                "unreachable",
                f"jump host {jump} has its own ProxyJump ({endpoint.jump}) in ssh config: "
                "chained jump hosts are not supported by dcctl, and connecting to the jump "
                "host directly would bypass that hop",
            )
        # A bastion usually takes the same key as the hosts behind it; offer that one too.
        extra = tuple(f for f in target_identity_files if f not in endpoint.identity_files)
        endpoint = dataclasses.replace(endpoint, identity_files=endpoint.identity_files + extra)
        sock = tcp_connect(endpoint, self._timeout_s, cancel, lambda _sock: None)
        try:
            await_banner(sock, endpoint, self._timeout_s, cancel)
            return self._handshaker.open(sock, endpoint, cancel)
        except BaseException:
            sock.close()  # whatever ended the connect (a HostError, Ctrl-C): no socket left open
            raise

    def close(self) -> None:
        with self._lock:
            for transport in self._jumps.values():
                if isinstance(transport, paramiko.Transport):
                    transport.close()
            self._jumps.clear()
