"""SSH transport over paramiko: host keys, auth, ProxyJump, deadlines that also kill on the node.

The only module that imports paramiko, so `dcctl --help` never pays for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import random
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import paramiko

from dcctl.inventory.model import Host
from dcctl.transport.base import (
    KILL_GRACE_S,
    POLL_INTERVAL_S,
    STDERR_KEPT_BYTES,
    STDOUT_KEPT_BYTES,
    CommandResult,
    HostError,
    TailBuffer,
    check_cancelled,
    holding,
    remote_timeout_argv,
)

SSH_PORT = 22
_T = TypeVar("_T")
DEFAULT_IDENTITY_FILES = ("id_ed25519", "id_ecdsa", "id_rsa")
PASSPHRASE_ENV = "DCCTL_SSH_KEY_PASSPHRASE"
READ_CHUNK = 65536

# paramiko logs failed handshakes with tracebacks; dcctl reports each failure as one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@dataclass
class SshOptions:
    """Per-run SSH settings, shared by every host of the run."""

    trusted_keys_file: Path
    user_known_hosts: Path = field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    ssh_config: Path = field(default_factory=lambda: Path.home() / ".ssh" / "config")
    accept_new_host_keys: bool = False
    connect_timeout_s: float = 10.0
    max_handshakes: int = 16


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


class TransientConnectError(HostError):
    """A connect-phase failure worth one retry: refused, or reset before the SSH handshake."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


class HostKeyStore:
    """known_hosts read and indexed once per run; new keys appended to dcctl's own file on request.

    Plain host names are looked up in a dict, so a 1,000-host run does not scan 1,000 lines per
    host; only hashed entries (HashKnownHosts) need a per-entry HMAC test.
    """

    def __init__(self, options: SshOptions) -> None:
        self._plain: dict[str, dict[str, paramiko.PKey]] = {}
        self._hashed: list[tuple[str, paramiko.PKey]] = []
        for path in (options.user_known_hosts, options.trusted_keys_file):
            if path.is_file():
                self._load(path)
        self._trusted_file = options.trusted_keys_file
        self._accept_new = options.accept_new_host_keys
        self._lock = threading.Lock()

    def _load(self, path: Path) -> None:
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            # Markers (@cert-authority, @revoked) are not host keys paramiko can check.
            if not line or line.startswith(("#", "@")):
                continue
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
            except (paramiko.SSHException, ValueError, TypeError):
                continue
            if entry is None or entry.key is None:
                continue
            for name in entry.hostnames:
                if name.startswith("|1|"):
                    self._hashed.append((name, entry.key))
                else:
                    self._plain.setdefault(name, {})[entry.key.get_name()] = entry.key

    def _lookup(self, name: str) -> dict[str, paramiko.PKey]:
        keys = dict(self._plain.get(name, {}))
        for hashed, key in self._hashed:
            if key.get_name() not in keys and paramiko.HostKeys.hash_host(name, hashed) == hashed:
                keys[key.get_name()] = key
        return keys

    def known_types(self, name: str) -> list[str]:
        with self._lock:
            return list(self._lookup(name))

    def verify(self, name: str, key: paramiko.PKey) -> None:
        with self._lock:
            known = self._lookup(name).get(key.get_name())
            if known is not None:
                if known == key:
                    return
                raise HostError(
                    "host_key",
                    f"host key for {name} has CHANGED ({key.get_name()} "
                    f"{key.fingerprint}); refusing to connect. If the host was reinstalled, "
                    "remove its old line from known_hosts and verify the new key",
                )
            if not self._accept_new:
                raise HostError(
                    "host_key",
                    f"unknown host key for {name} ({key.get_name()} {key.fingerprint}); "
                    "add it to ~/.ssh/known_hosts or rerun with --accept-new-host-keys",
                )
            self._plain.setdefault(name, {})[key.get_name()] = key
            self._append_trusted(name, key)

    def _append_trusted(self, name: str, key: paramiko.PKey) -> None:
        self._trusted_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self._trusted_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            out.write(f"{name} {key.get_name()} {key.get_base64()}\n")


class _SerializedAgentKey(paramiko.AgentKey):
    """An agent key whose signing requests never interleave with another thread's.

    paramiko's Agent connection has no lock: two hosts signing at once over one agent socket
    read each other's replies and both fail authentication.
    """

    def __init__(self, key: paramiko.AgentKey, lock: threading.Lock) -> None:
        super().__init__(key.agent, key.blob, key.comment)
        self._sign_lock = lock

    def sign_ssh_data(self, data: Any, algorithm: str | None = None) -> Any:
        with self._sign_lock:
            return super().sign_ssh_data(data, algorithm)


class KeyRing:
    """Private keys and agent keys, each loaded at most once per run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, paramiko.PKey | str] = {}
        self._agent: paramiko.Agent | None = None
        self._agent_keys_cache: list[paramiko.AgentKey] | None = None
        self._agent_lock = threading.Lock()

    def keys_for(self, identity_files: Sequence[str]) -> tuple[list[paramiko.PKey], list[str]]:
        """Keys to offer, and a note per key file that could not be used (for the auth error)."""
        keys: list[paramiko.PKey] = []
        problems: list[str] = []
        for path in identity_files:
            loaded = self._load_file(path)
            if isinstance(loaded, str):
                problems.append(loaded)
            else:
                keys.append(loaded)
        keys.extend(self._agent_keys())
        return keys, problems

    def _load_file(self, path: str) -> paramiko.PKey | str:
        with self._lock:
            if path not in self._files:
                self._files[path] = _read_private_key(path)
            return self._files[path]

    def _agent_keys(self) -> list[paramiko.AgentKey]:
        with self._lock:
            if self._agent_keys_cache is None:
                self._agent_keys_cache = []
                if os.environ.get("SSH_AUTH_SOCK"):
                    self._agent = paramiko.Agent()
                    self._agent_keys_cache = [
                        _SerializedAgentKey(key, self._agent_lock) for key in self._agent.get_keys()
                    ]
            return self._agent_keys_cache

    def close(self) -> None:
        with self._lock:
            if self._agent is not None:
                self._agent.close()


def _read_private_key(path: str) -> paramiko.PKey | str:
    try:
        return paramiko.PKey.from_path(path, password=os.environ.get(PASSPHRASE_ENV))
    except FileNotFoundError:
        return f"key file {path} not found"
    except paramiko.PasswordRequiredException:
        return f"key file {path} is encrypted: load it into ssh-agent or set {PASSPHRASE_ENV}"
    except (paramiko.SSHException, OSError, ValueError) as exc:
        return f"key file {path} unreadable: {exc}"


class SshContext:
    """What all SSH hosts of one run share: host keys, loaded keys, jump-host connections."""

    def __init__(self, options: SshOptions) -> None:
        self.options = options
        self.host_keys = HostKeyStore(options)
        self.keyring = KeyRing()
        self._config = _load_ssh_config(options.ssh_config)
        self._handshakes = threading.BoundedSemaphore(options.max_handshakes)
        self._jumps: dict[str, paramiko.Transport | HostError] = {}
        self._jump_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def handshake_slot(self, cancel: threading.Event | None) -> Iterator[None]:
        """Bound handshakes in flight apart from commands running: key exchange is the
        CPU-heavy part, and too many at once only make every one of them slower."""
        with holding(self._handshakes, cancel):
            yield

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
        config_files = [os.path.expanduser(p) for p in config.get("identityfile", [])]
        if key_file:
            identity_files: list[str] = [key_file]
        elif config_files:
            identity_files = config_files
        else:
            ssh_dir = Path.home() / ".ssh"
            identity_files = [
                str(ssh_dir / n) for n in DEFAULT_IDENTITY_FILES if (ssh_dir / n).is_file()
            ]
        proxy_jump = config.get("proxyjump")
        return Endpoint(
            display=name,
            address=config.get("hostname", address),
            port=port or int(config.get("port", SSH_PORT)),
            user=user or config.get("user") or _local_user(),
            identity_files=tuple(identity_files),
            jump=jump or (proxy_jump if proxy_jump and proxy_jump != "none" else None),
        )

    def jump_channel(
        self, jump: str, target: Endpoint, cancel: threading.Event | None
    ) -> paramiko.Channel:
        """A direct-tcpip channel to target through one shared connection to the jump host."""
        if "," in jump:
            raise HostError("unreachable", f"jump {jump!r}: only one jump host is supported")
        with self._lock:
            lock = self._jump_locks.setdefault(jump, threading.Lock())
        with lock:
            known = self._jumps.get(jump)
            # A dead bastion is tried once per run, not once per host behind it.
            if isinstance(known, HostError):
                raise HostError(known.kind, known.message)
            if known is None or not known.is_active():
                try:
                    known = self._connect_jump(jump, target.identity_files, cancel)
                except HostError as exc:
                    if exc.kind != "interrupted":
                        self._jumps[jump] = exc
                    raise
                self._jumps[jump] = known
            transport = known
        try:
            return transport.open_channel(
                "direct-tcpip",
                (target.address, target.port),
                ("127.0.0.1", 0),
                timeout=self.options.connect_timeout_s,
            )
        except (paramiko.SSHException, OSError) as exc:
            raise HostError(
                "unreachable",
                f"jump host {jump} cannot reach {target.address}:{target.port}: {exc}",
            ) from exc

    def _connect_jump(
        self, jump: str, target_identity_files: tuple[str, ...], cancel: threading.Event | None
    ) -> paramiko.Transport:
        user, _, hostport = jump.rpartition("@")
        address, port = _split_host_port(hostport)
        # Named "jump host ..." so every connect, key or auth error says which hop failed.
        endpoint = self.resolve(f"jump host {jump}", address, port, user or None, None, None)
        # A bastion usually takes the same key as the hosts behind it; offer that one too.
        extra = tuple(f for f in target_identity_files if f not in endpoint.identity_files)
        endpoint = dataclasses.replace(endpoint, identity_files=endpoint.identity_files + extra)
        sock = _tcp_connect(endpoint, self.options.connect_timeout_s, cancel, lambda _s: None)
        return _handshake(self, sock, endpoint, cancel)

    def close(self) -> None:
        with self._lock:
            for transport in self._jumps.values():
                if isinstance(transport, paramiko.Transport):
                    transport.close()
            self._jumps.clear()
        self.keyring.close()


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

    def _connection(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        self.close()  # a connection that died: release its socket before opening another
        try:
            self._transport = self._open()
        except TransientConnectError:
            # A refused or reset connect is often sshd briefly over MaxStartups or restarting:
            # one retry, after a jittered pause so a whole rack does not retry in lockstep.
            pause = random.uniform(0.2, 1.0)
            if self._cancel is None:
                time.sleep(pause)
            elif self._cancel.wait(pause):
                check_cancelled(self._cancel)
            self._transport = self._open()
        return self._transport

    def _open(self) -> paramiko.Transport:
        check_cancelled(self._cancel)
        endpoint = self._endpoint
        if endpoint.jump:
            self._sock = self._context.jump_channel(endpoint.jump, endpoint, self._cancel)
        else:
            self._sock = _tcp_connect(
                endpoint, self._context.options.connect_timeout_s, self._cancel, self._hold
            )
        try:
            # Wait for the banner outside the handshake slots: a hung host must not hold one.
            _await_banner(
                self._sock, endpoint, self._context.options.connect_timeout_s, self._cancel
            )
            with self._context.handshake_slot(self._cancel):
                return _handshake(self._context, self._sock, endpoint, self._cancel)
        except HostError:
            self._sock.close()
            raise

    def _hold(self, sock: socket.socket) -> None:
        """Keep the socket being connected where close() (Ctrl-C) can reach it."""
        self._sock = sock

    def connect(self) -> None:
        """TCP, banner, key exchange and auth now, each under the connect timeout: the fleet
        waits on a slow or silent host before giving it one of its --forks slots."""
        self._translating(self._connection)

    def run(
        self, argv: Sequence[str], deadline: float, stdin: bytes | None = None
    ) -> CommandResult:
        return self._translating(lambda: self._run(argv, deadline, stdin))

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

    def _run(self, argv: Sequence[str], deadline: float, stdin: bytes | None) -> CommandResult:
        connection = self._connection()
        check_cancelled(self._cancel)
        # Measured after connecting, so the node's own kill never outlasts our deadline.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise HostError(
                "timeout", f"{self._endpoint.display}: deadline passed before {argv[0]} could start"
            )
        channel = connection.open_session(timeout=self._context.options.connect_timeout_s)
        try:
            channel.settimeout(remaining)
            channel.exec_command(shlex.join(remote_timeout_argv(argv, remaining)))
            if stdin is not None:
                channel.sendall(stdin)
                channel.shutdown_write()
            # Otherwise stdin stays open: the node runtime exits when it sees EOF there, so a
            # controller that vanishes (Ctrl-C, crash) takes its remote work with it.
            return self._collect(channel, deadline)
        except TimeoutError as exc:
            raise HostError(
                "timeout", f"{self._endpoint.display}: sending input took past the deadline"
            ) from exc
        finally:
            channel.close()

    def _collect(self, channel: paramiko.Channel, deadline: float) -> CommandResult:
        stdout = TailBuffer(STDOUT_KEPT_BYTES)
        stderr = TailBuffer(STDERR_KEPT_BYTES)
        give_up_at = deadline + KILL_GRACE_S + 1.0
        timed_out = False
        while True:
            if _drain(channel, stdout, stderr):
                continue
            if channel.exit_status_ready() and (channel.eof_received or channel.closed):
                break
            if _transport_gone(channel):
                raise HostError(
                    "unreachable", f"connection to {self._endpoint.display} lost mid-command"
                )
            check_cancelled(self._cancel)
            if time.monotonic() > give_up_at:
                timed_out = True
                break
            _wait_ready(channel, POLL_INTERVAL_S)
        # Ctrl-C closes the connection under us, which reads like an ordinary channel close.
        check_cancelled(self._cancel)
        # exit-signal (killed on the node) leaves paramiko's exit_status at -1.
        exit_code = 124 if timed_out else channel.exit_status
        if exit_code == -1 and _transport_gone(channel):
            raise HostError(
                "unreachable", f"connection to {self._endpoint.display} lost mid-command"
            )
        return CommandResult(
            exit_code=exit_code,
            stdout=stdout.text(),
            stderr=stderr.text(),
            timed_out=timed_out or (exit_code in (124, 137) and time.monotonic() >= deadline),
        )

    def close(self) -> None:
        """Safe from another thread: unblocks a connect or read in progress (used by Ctrl-C)."""
        if self._transport is not None:
            self._transport.close()
        if self._sock is not None:
            self._sock.close()


def _drain(channel: paramiko.Channel, stdout: TailBuffer, stderr: TailBuffer) -> bool:
    drained = False
    while channel.recv_ready():
        stdout.add(channel.recv(READ_CHUNK))
        drained = True
    while channel.recv_stderr_ready():
        stderr.add(channel.recv_stderr(READ_CHUNK))
        drained = True
    return drained


def _transport_gone(channel: paramiko.Channel) -> bool:
    transport = channel.get_transport()
    return transport is None or not transport.is_active()


def _tcp_connect(
    endpoint: Endpoint,
    timeout_s: float,
    cancel: threading.Event | None,
    hold: Callable[[socket.socket], None],
) -> socket.socket:
    """Connect without blocking for long, so Ctrl-C lands within a poll interval."""
    where = f"{endpoint.display} ({endpoint.address}:{endpoint.port})"
    try:
        addresses = socket.getaddrinfo(
            endpoint.address, endpoint.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise HostError("unreachable", f"{where}: cannot resolve host name ({exc})") from exc
    give_up_at = time.monotonic() + timeout_s
    error: HostError | None = None
    for family, kind, proto, _name, address in addresses:
        sock = socket.socket(family, kind, proto)
        hold(sock)
        try:
            _connect_polling(sock, address, give_up_at, cancel)
        except ConnectionRefusedError:
            sock.close()
            error = TransientConnectError(f"{where}: connection refused (is sshd running?)")
            continue
        except TimeoutError:
            sock.close()
            error = HostError("unreachable", f"{where}: connect timed out after {timeout_s:g}s")
            break
        except OSError as exc:
            sock.close()
            check_cancelled(cancel)
            error = HostError("unreachable", f"{where}: {exc.strerror or exc}")
            continue
        sock.settimeout(timeout_s)
        return sock
    assert error is not None
    raise error


def _connect_polling(
    sock: socket.socket,
    address: Any,
    give_up_at: float,
    cancel: threading.Event | None,
) -> None:
    sock.setblocking(False)
    code = sock.connect_ex(address)
    if code not in (0, errno.EINPROGRESS):
        raise OSError(code, os.strerror(code))
    while code == errno.EINPROGRESS:
        check_cancelled(cancel)
        if time.monotonic() > give_up_at:
            raise TimeoutError
        if _wait_ready(sock, POLL_INTERVAL_S, writable=True):
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == errno.ECONNREFUSED:
                raise ConnectionRefusedError
            if code:
                raise OSError(code, os.strerror(code))
    sock.setblocking(True)


def _wait_ready(
    source: socket.socket | paramiko.Channel, timeout_s: float, writable: bool = False
) -> bool:
    """poll(), not select(): a 1,000-host run holds more than select's 1,024 descriptors."""
    poller = select.poll()
    poller.register(source.fileno(), select.POLLOUT if writable else select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))


def _await_banner(
    sock: socket.socket | paramiko.Channel,
    endpoint: Endpoint,
    timeout_s: float,
    cancel: threading.Event | None,
) -> None:
    """Wait until the server has said something, without reading it (paramiko will)."""
    give_up_at = time.monotonic() + timeout_s
    while not _wait_ready(sock, POLL_INTERVAL_S):
        check_cancelled(cancel)
        if time.monotonic() > give_up_at:
            raise HostError(
                "timeout",
                f"{endpoint.display} ({endpoint.address}:{endpoint.port}): "
                f"no SSH banner within {timeout_s:g}s (host hung?)",
            )


def _handshake(
    context: SshContext,
    sock: socket.socket | paramiko.Channel,
    endpoint: Endpoint,
    cancel: threading.Event | None,
) -> paramiko.Transport:
    timeout_s = context.options.connect_timeout_s
    where = f"{endpoint.display} ({endpoint.address}:{endpoint.port})"
    transport = paramiko.Transport(sock)
    transport.banner_timeout = timeout_s
    transport.handshake_timeout = timeout_s
    transport.auth_timeout = timeout_s
    try:
        _prefer_known_key_types(transport, context.host_keys.known_types(endpoint.known_hosts_name))
        # Longer than banner_timeout, so a silent peer fails on the banner with a clear error
        # instead of start_client returning early with no session.
        transport.start_client(timeout=2 * timeout_s + 1)
        if not transport.initial_kex_done:
            raise HostError("timeout", f"{where}: SSH key exchange did not finish in time")
        check_cancelled(cancel)
        context.host_keys.verify(endpoint.known_hosts_name, transport.get_remote_server_key())
        _authenticate(context, transport, endpoint)
    except HostError:
        transport.close()
        raise
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        check_cancelled(cancel)
        if "banner" in str(exc).lower() or isinstance(exc, socket.timeout):
            raise HostError(
                "timeout", f"{where}: no SSH banner within {timeout_s:g}s (host hung?)"
            ) from exc
        reason = str(exc) or type(exc).__name__
        message = f"{where}: SSH handshake failed: {reason}"
        if isinstance(exc, (EOFError, ConnectionResetError)):
            raise TransientConnectError(message) from exc
        raise HostError("unreachable", message) from exc
    return transport


# known_hosts names an RSA key `ssh-rsa`; paramiko negotiates it as one of these signatures.
_KEY_TYPE_ALIASES = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}


def _prefer_known_key_types(transport: paramiko.Transport, known_types: list[str]) -> None:
    """Ask for a host key type we already trust, so a host with several keys is not "unknown"."""
    options = transport.get_security_options()
    supported = list(options.key_types)
    wanted: list[str] = []
    for known in known_types:
        for key_type in _KEY_TYPE_ALIASES.get(known, (known,)):
            if key_type in supported and key_type not in wanted:
                wanted.append(key_type)
    if wanted:
        options.key_types = tuple(wanted + [t for t in supported if t not in wanted])


def _authenticate(context: SshContext, transport: paramiko.Transport, endpoint: Endpoint) -> None:
    keys, problems = context.keyring.keys_for(endpoint.identity_files)
    for key in keys:
        try:
            transport.auth_publickey(endpoint.user, key)
        except paramiko.AuthenticationException as exc:
            # paramiko reports a server that never answers like a refused key: trying the
            # next key would wait as long again, and "auth" would send the user to their keys.
            if "timeout" in str(exc).lower():
                raise HostError(
                    "timeout",
                    f"{endpoint.display}: no answer to authentication in "
                    f"{context.options.connect_timeout_s:g} s (the server is stuck checking "
                    "the key: a hung AuthorizedKeysCommand or directory lookup)",
                ) from exc
            continue
        if transport.is_authenticated():
            return
    tried = f"{len(keys)} key(s) offered" + (f"; {'; '.join(problems)}" if problems else "")
    raise HostError(
        "auth",
        f"authentication failed for {endpoint.user}@{endpoint.display} ({tried}); "
        "check `user` and `key_file` in the inventory or load the key into ssh-agent",
    )


def _load_ssh_config(path: Path) -> paramiko.SSHConfig:
    if path.is_file():
        return paramiko.SSHConfig.from_path(str(path))
    return paramiko.SSHConfig()


def _split_host_port(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        address, _, rest = hostport[1:].partition("]")
        return address, int(rest[1:]) if rest.startswith(":") else None
    if hostport.count(":") == 1:
        address, port = hostport.split(":")
        return address, int(port)
    return hostport, None


def _local_user() -> str:
    import getpass

    return getpass.getuser()
