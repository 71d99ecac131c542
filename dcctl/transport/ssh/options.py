"""The SSH settings one run shares across all its hosts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class SshOptions:
    """Per-run SSH settings, shared by every host of the run."""

    trusted_keys_file: Path
    user_known_hosts: Path = field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    ssh_config: Path = field(default_factory=lambda: Path.home() / ".ssh" / "config")
    accept_new_host_keys: bool = False
    connect_timeout_s: float = 10.0
    max_handshakes: int = 16
