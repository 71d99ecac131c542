"""SshTransport: one authenticated connection per host, and commands run over it."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import paramiko

from dcctl.inventory.model import Host
from dcctl.transport.base import CommandResult, HostError, ProgressCallback, check_cancelled
from dcctl.transport.ssh.context import SshContext
from dcctl.transport.ssh.errors import TransientConnectError
from dcctl.transport.ssh.session import run_command
from dcctl.transport.ssh.sockets import await_banner, tcp_connect

_T = TypeVar("_T")


class SshTransport:
    """One authenticated connection per host, opened on first use and reused by every step."""

    def __init__(
        self, host: Host, context: SshContext, cancel: threading.Event | None = None
    ) -> None:
        self._endpoint = context.endpoint(host)
        self._context = context
        self._cancel = cancel
        self._transport: paramiko.Transport | None = None
        self._sock: socket.socket | paramiko.Channel | None = None

    def connect(self) -> None:
        """TCP, banner, key exchange and auth now, each under the connect timeout: the fleet
        waits on a slow or silent host before giving it one of its --forks slots."""
        self._translating(self._connection)

    def run(
        self,
        argv: Sequence[str],
        deadline: float,
        stdin: bytes | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CommandResult:
        return self._translating(lambda: self._run(argv, deadline, stdin, on_progress))

    def close(self) -> None:
        """Safe from another thread: unblocks a connect or read in progress (used by Ctrl-C)."""
        if self._transport is not None:
            self._transport.close()
        if self._sock is not None:
            self._sock.close()

    def _run(
        self,
        argv: Sequence[str],
        deadline: float,
        stdin: bytes | None,
        on_progress: ProgressCallback | None,
    ) -> CommandResult:
        connection = self._connection()
        check_cancelled(self._cancel)
        return run_command(
            connection,
            argv,
            deadline,
            stdin,
            self._endpoint.display,
            self._context.options.connect_timeout_s,
            self._cancel,
            on_progress,
        )

    def _translating(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except HostError:
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            check_cancelled(self._cancel)
            raise HostError(
                "unreachable", f"connection to {self._endpoint.display} lost: {exc}"
            ) from exc

    def _connection(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        self.close()  # a connection that died: release its socket before opening another
        try:
            self._transport = self._open()
        except TransientConnectError:
            # A refused or reset connect is often sshd briefly over MaxStartups or restarting:
            # one retry, after a jittered pause so a whole rack does not retry in lockstep.
            self._pause(random.uniform(0.2, 1.0))
            self._transport = self._open()
        return self._transport

    def _pause(self, seconds: float) -> None:
        if self._cancel is None:
            time.sleep(seconds)
        elif self._cancel.wait(seconds):
            check_cancelled(self._cancel)

    def _open(self) -> paramiko.Transport:
        check_cancelled(self._cancel)
        self._sock = self._socket()
        timeout_s = self._context.options.connect_timeout_s
        try:
            # Wait for the banner outside the handshake slots: a hung host must not hold one.
            await_banner(self._sock, self._endpoint, timeout_s, self._cancel)
            with self._context.handshake_slot(self._cancel):
                return self._context.handshaker.open(self._sock, self._endpoint, self._cancel)
        except HostError:
            self._sock.close()
            raise

    def _socket(self) -> socket.socket | paramiko.Channel:
        if self._endpoint.jump:
            return self._context.jump_channel(self._endpoint.jump, self._endpoint, self._cancel)
        return tcp_connect(
            self._endpoint, self._context.options.connect_timeout_s, self._cancel, self._hold
        )

    def _hold(self, sock: socket.socket) -> None:
        """Keep the socket being connected where close() (Ctrl-C) can reach it."""
        self._sock = sock
