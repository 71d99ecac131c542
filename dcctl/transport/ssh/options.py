"""The SSH settings one run shares across all its hosts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# OpenSSH's defaults for UserKnownHostsFile and GlobalKnownHostsFile (ssh_config(5)). Clusters
# often hand out host keys only through the global file; skipping it would make such a host
# "unknown", and --accept-new-host-keys would then trust whatever key answers.
DEFAULT_GLOBAL_KNOWN_HOSTS = (Path("/etc/ssh/ssh_known_hosts"), Path("/etc/ssh/ssh_known_hosts2"))


def _default_user_known_hosts() -> tuple[Path, ...]:
    ssh_dir = Path.home() / ".ssh"
    return (ssh_dir / "known_hosts", ssh_dir / "known_hosts2")


@dataclass(frozen=True)
class KnownHostsFiles:
    """The known_hosts files ~/.ssh/config names for one host; None keeps the run's own."""

    user: tuple[Path, ...] | None = None  # UserKnownHostsFile
    system: tuple[Path, ...] | None = None  # GlobalKnownHostsFile


@dataclass
class SshOptions:
    """Per-run SSH settings, shared by every host of the run.

    trusted_keys_file  dcctl's own known_hosts (<state>/known_hosts): always read, and where
                       --accept-new-host-keys records keys
    user_known_hosts   read for every host unless ~/.ssh/config sets UserKnownHostsFile
    global_known_hosts read for every host unless ~/.ssh/config sets GlobalKnownHostsFile
    """

    trusted_keys_file: Path
    user_known_hosts: tuple[Path, ...] = field(default_factory=_default_user_known_hosts)
    global_known_hosts: tuple[Path, ...] = DEFAULT_GLOBAL_KNOWN_HOSTS
    ssh_config: Path = field(default_factory=lambda: Path.home() / ".ssh" / "config")
    accept_new_host_keys: bool = False
    connect_timeout_s: float = 10.0
    max_handshakes: int = 16
