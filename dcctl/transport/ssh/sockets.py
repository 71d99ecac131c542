"""TCP connect and waits on sockets, each a poll interval at a time so Ctrl-C lands quickly."""

from __future__ import annotations

import errno
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paramiko

from dcctl.transport.base import POLL_INTERVAL_S, HostError, check_cancelled
from dcctl.transport.ssh.endpoint import Endpoint
from dcctl.transport.ssh.errors import TransientConnectError, no_banner


def tcp_connect(
    endpoint: Endpoint,
    timeout_s: float,
    cancel: threading.Event | None,
    hold: Callable[[socket.socket], None],
) -> socket.socket:
    """Connect to the first address that answers; `hold` sees each socket before it connects,
    so another thread can close it (Ctrl-C) while the connect is in progress."""
    give_up_at = time.monotonic() + timeout_s
    error: HostError | None = None
    for family, kind, proto, _name, address in _addresses(endpoint):
        sock = socket.socket(family, kind, proto)
        hold(sock)
        try:
            _connect_polling(sock, address, give_up_at, cancel)
        except ConnectionRefusedError:
            sock.close()
            error = TransientConnectError(
                f"{endpoint.where}: connection refused (is sshd running?)"
            )
            continue
        except TimeoutError:
            sock.close()
            raise HostError(
                "unreachable", f"{endpoint.where}: connect timed out after {timeout_s:g}s"
            ) from None
        except OSError as exc:
            sock.close()
            check_cancelled(cancel)
            error = HostError("unreachable", f"{endpoint.where}: {exc.strerror or exc}")
            continue
        sock.settimeout(timeout_s)
        return sock
    assert error is not None  # getaddrinfo never returns an empty list
    raise error


def _addresses(endpoint: Endpoint) -> list[tuple[Any, ...]]:
    try:
        return socket.getaddrinfo(
            endpoint.address, endpoint.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise HostError(
            "unreachable", f"{endpoint.where}: cannot resolve host name ({exc})"
        ) from exc


def _connect_polling(
    sock: socket.socket, address: Any, give_up_at: float, cancel: threading.Event | None
) -> None:
    sock.setblocking(False)
    code = sock.connect_ex(address)
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, os.strerror(code))
    while code == errno.EINPROGRESS:
        check_cancelled(cancel)
        if time.monotonic() > give_up_at:
            raise TimeoutError
        if wait_ready(sock, POLL_INTERVAL_S, writable=True):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == errno.ECONNREFUSED:
                raise ConnectionRefusedError
            if code:
                raise OSError(code, os.strerror(code))
    sock.setblocking(True)


def wait_ready(
    source: socket.socket | paramiko.Channel, timeout_s: float, writable: bool = False
) -> bool:
    """poll(), not select(): a 1,000-host run holds more than select's 1,024 descriptors."""
    poller = select.poll()
    poller.register(source.fileno(), select.POLLOUT if writable else select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def await_banner(
    sock: socket.socket | paramiko.Channel,
    endpoint: Endpoint,
    timeout_s: float,
    cancel: threading.Event | None,
) -> None:
    """Wait until the server has said something, without reading it (paramiko will).

    Our own timer, so a silent host is told from a failing handshake by what happened,
    not by the words of paramiko's exception.
    """
    give_up_at = time.monotonic() + timeout_s
    while not wait_ready(sock, POLL_INTERVAL_S):
        check_cancelled(cancel)
        if time.monotonic() > give_up_at:
            raise no_banner(endpoint.where, timeout_s)
