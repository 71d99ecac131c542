"""Failures of the SSH transport that callers treat apart from an ordinary HostError."""

from __future__ import annotations

from dcctl.transport.base import HostError


class TransientConnectError(HostError):
    """A connect-phase failure worth one retry: refused, or reset before the SSH handshake."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


def no_banner(where: str, timeout_s: float) -> HostError:
    """A host that accepted the TCP connection and then said nothing: hung, or not sshd."""
    return HostError("timeout", f"{where}: no SSH banner within {timeout_s:g}s (host hung?)")
