"""Each host's transport, for the per-host fleet and for gang jobs alike: the local transport,
or SSH with one context (trusted keys, agent, ~/.ssh/config) shared by every host of a run."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from dcctl.fleet.outcome import FleetOptions
from dcctl.inventory.model import Host
from dcctl.transport.base import Transport

if TYPE_CHECKING:
    from dcctl.transport.ssh import SshContext


class Transports:
    """Builds transports; `close()` ends the shared SSH context (the transports close apart)."""

    def __init__(self, options: FleetOptions) -> None:
        self._options = options
        self._lock = threading.Lock()
        self._ssh_context: SshContext | None = None

    def new(self, host: Host, cancel: threading.Event) -> Transport:
        """A transport for `host` that gives up once `cancel` is set."""
        if host.connection == "local":
            from dcctl.transport.local import LocalTransport

            return LocalTransport(cancel)
        # Imported here so commands that never reach an SSH host never load paramiko.
        from dcctl.transport.ssh import SshTransport

        return SshTransport(host, self._context(), cancel)

    def _context(self) -> SshContext:
        from dcctl.transport.ssh import SshContext, SshOptions

        with self._lock:
            if self._ssh_context is None:
                self._ssh_context = SshContext(
                    SshOptions(
                        trusted_keys_file=self._options.trusted_keys_file,
                        accept_new_host_keys=self._options.accept_new_host_keys,
                        connect_timeout_s=self._options.connect_timeout_s,
                    )
                )
            return self._ssh_context

    def close(self) -> None:
        with self._lock:
            if self._ssh_context is not None:
                self._ssh_context.close()
                self._ssh_context = None
