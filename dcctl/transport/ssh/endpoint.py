"""Where a host is reached and as whom: inventory values first, ~/.ssh/config for the rest."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from dcctl.inventory.model import Host

SSH_PORT = 22
DEFAULT_IDENTITY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and as whom, after ~/.ssh/config has filled what the inventory left open."""

    display: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    jump: str | None

    @property
    def known_hosts_name(self) -> str:
        return self.address if self.port == SSH_PORT else f"[{self.address}]:{self.port}"

    @property
    def where(self) -> str:
        """How errors name the host: its inventory name and the address actually dialled."""
        return f"{self.display} ({self.address}:{self.port})"


class EndpointResolver:
    """Reads ~/.ssh/config once per run and resolves each host against it."""

    def __init__(self, ssh_config: Path) -> None:
        self._config = _load_ssh_config(ssh_config)

    def endpoint(self, host: Host) -> Endpoint:
        return self.resolve(host.name, host.address, host.port, host.user, host.key_file, host.jump)

    def resolve(
        self,
        name: str,
        address: str,
        port: int | None,
        user: str | None,
        key_file: str | None,
        jump: str | None,
    ) -> Endpoint:
        """Inventory values win; ~/.ssh/config fills the rest, as OpenSSH would."""
        config = self._config.lookup(address)
        proxy_jump = config.get("proxyjump")
        return Endpoint(
            display=name,
            address=config.get("hostname", address),
            port=port or int(config.get("port", SSH_PORT)),
            user=user or config.get("user") or getpass.getuser(),
            identity_files=_identity_files(key_file, config.get("identityfile", [])),
            jump=jump or (proxy_jump if proxy_jump and proxy_jump != "none" else None),
        )


def _identity_files(key_file: str | None, config_files: str | list[str]) -> tuple[str, ...]:
    if key_file:
        return (key_file,)
    if config_files:
        # paramiko gives IdentityFile as a list; typed loosely as any config value.
        paths = [config_files] if isinstance(config_files, str) else config_files
        return tuple(os.path.expanduser(path) for path in paths)
    # Like OpenSSH, the default identities are offered only where they exist.
    ssh_dir = Path.home() / ".ssh"
    return tuple(str(ssh_dir / n) for n in DEFAULT_IDENTITY_FILES if (ssh_dir / n).is_file())


def _load_ssh_config(path: Path) -> paramiko.SSHConfig:
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def split_host_port(hostport: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6]:port`, as ProxyJump writes them."""
    if hostport.startswith("["):
        address, _, rest = hostport[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") else None
    if hostport.count(":") == 1:
        address, port = hostport.split(":")
        return address, int(port)
    return hostport, None
