"""Where a host is reached and as whom: inventory values first, ~/.ssh/config for the rest."""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from dcctl.inventory.model import Host
from dcctl.transport.base import HostError
from dcctl.transport.ssh.options import KnownHostsFiles

SSH_PORT = 22
DEFAULT_IDENTITY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")
_TOKEN = re.compile(r"%(.?)", re.DOTALL)


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and as whom, after ~/.ssh/config has filled what the inventory left open."""

    display: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    jump: str | None
    host_key_alias: str | None = None
    known_hosts_files: KnownHostsFiles = field(default_factory=KnownHostsFiles)

    @property
    def known_hosts_name(self) -> str:
        """The name its keys are recorded under: HostKeyAlias as it stands (OpenSSH adds no
        port to an alias), else `address` or `[address]:port`."""
        if self.host_key_alias:
            return self.host_key_alias
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
        endpoint = Endpoint(
            display=name,
            address=config.get("hostname", address),
            port=port or _config_port(config.get("port"), name),
            user=user or config.get("user") or getpass.getuser(),
            identity_files=_identity_files(key_file, config.get("identityfile", [])),
            jump=jump or (proxy_jump if proxy_jump and proxy_jump != "none" else None),
            host_key_alias=config.get("hostkeyalias"),
        )
        return dataclasses.replace(
            endpoint, known_hosts_files=_known_hosts_files(config, endpoint, address)
        )


def _config_port(value: str | None, name: str) -> int:
    if value is None:
        return SSH_PORT
    return parse_port(value, f"{name}: Port in ssh config")


def _known_hosts_files(
    config: paramiko.SSHConfigDict, endpoint: Endpoint, original: str
) -> KnownHostsFiles:
    tokens = _path_tokens(endpoint, original)
    return KnownHostsFiles(
        user=_file_list(config.get("userknownhostsfile"), tokens, endpoint.display),
        system=_file_list(config.get("globalknownhostsfile"), tokens, endpoint.display),
    )


def _path_tokens(endpoint: Endpoint, original: str) -> dict[str, str]:
    """The `%` tokens ssh_config(5) allows in known_hosts paths (%k is the common one: a file
    per host, `~/.ssh/known_hosts.d/%k`). %C is not expanded: a path using it is refused."""
    local = socket.gethostname()
    return {
        "%": "%",
        "d": str(Path.home()),
        "u": getpass.getuser(),
        "i": str(os.getuid()),
        "l": local,
        "L": local.split(".")[0],
        "h": endpoint.address,
        "p": str(endpoint.port),
        "r": endpoint.user,
        "n": original,
        "k": endpoint.host_key_alias or original,
    }


def _file_list(value: str | None, tokens: dict[str, str], display: str) -> tuple[Path, ...] | None:
    """UserKnownHostsFile / GlobalKnownHostsFile: None when unset, () for `none`."""
    if value is None:
        return None
    if value.lower() == "none":
        return ()
    return tuple(_expand_path(path, tokens, display) for path in value.split())


def _expand_path(path: str, tokens: dict[str, str], display: str) -> Path:
    def token(match: re.Match[str]) -> str:
        if match.group(1) not in tokens:
            # Left as is, the path would name no file, and the host would pass for unknown.
            raise HostError(
                "host_key",
                f"{display}: known_hosts path {path!r} in ssh config uses %{match.group(1)}, "
                "which dcctl does not expand",
            )
        return tokens[match.group(1)]

    return Path(os.path.expanduser(_TOKEN.sub(token, path)))


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


def split_host_port(hostport: str, what: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6]:port`, as ProxyJump writes them; `what` names the value
    in the error for a port that is not a number."""
    if hostport.startswith("["):
        address, _, rest = hostport[1:].partition("]")
        return address, parse_port(rest[1:], what) if rest.startswith(":") else None
    if hostport.count(":") == 1:
        address, port = hostport.split(":")
        return address, parse_port(port, what)
    return hostport, None


def parse_port(text: str, what: str) -> int:
    """A TCP port, or a HostError naming the value (not a bare ValueError from int())."""
    port = int(text) if text.isascii() and text.isdigit() else 0
    if not 0 < port < 65536:
        raise HostError("unreachable", f"{what}: port {text!r} is not a number from 1 to 65535")
    return port
