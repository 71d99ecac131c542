"""Failures of the SSH transport that callers treat apart from an ordinary HostError."""

from __future__ import annotations

from dcctl.transport.base import HostError


class TransientConnectError(HostError):
    """A connect-phase failure worth one retry: refused, or reset before the SSH handshake."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)
