"""What all SSH hosts of one run share: host keys, loaded keys, jump hosts, handshake slots."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import paramiko

from dcctl.inventory.model import Host
from dcctl.transport.base import holding
from dcctl.transport.ssh.endpoint import Endpoint, EndpointResolver
from dcctl.transport.ssh.handshake import Handshaker
from dcctl.transport.ssh.host_keys import HostKeyStore
from dcctl.transport.ssh.jump import JumpHosts
from dcctl.transport.ssh.keys import KeyRing
from dcctl.transport.ssh.options import SshOptions


class SshContext:
    """What all SSH hosts of one run share: host keys, loaded keys, jump-host connections."""

    def __init__(self, options: SshOptions) -> None:
        self.options = options
        self.host_keys = HostKeyStore(options)
        self.keyring = KeyRing()
        self.resolver = EndpointResolver(options.ssh_config)
        self.handshaker = Handshaker(self.host_keys, self.keyring, options.connect_timeout_s)
        self._jumps = JumpHosts(self.resolver, self.handshaker, options.connect_timeout_s)
        self._handshakes = threading.BoundedSemaphore(options.max_handshakes)

    @contextlib.contextmanager
    def handshake_slot(self, cancel: threading.Event | None) -> Iterator[None]:
        """Bound handshakes in flight apart from commands running: key exchange is the
        CPU-heavy part, and too many at once only make every one of them slower."""
        with holding(self._handshakes, cancel):
            yield

    def endpoint(self, host: Host) -> Endpoint:
        return self.resolver.endpoint(host)

    def jump_channel(
        self, jump: str, target: Endpoint, cancel: threading.Event | None
    ) -> paramiko.Channel:
        return self._jumps.channel(jump, target, cancel)

    def close(self) -> None:
        self._jumps.close()
        self.keyring.close()
