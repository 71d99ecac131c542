"""A lab of real OpenSSH servers on loopback addresses, for integration tests.

No pytest dependency: usable from fixtures, scripts or a REPL.

    lab = SshLab(Path("/tmp/lab"))
    sshd = lab.start_sshd(["127.0.0.2", "127.0.0.3"])
    write_known_hosts(lab.root / "known_hosts", [sshd])
    ...
    lab.stop()

Every address must be in 127.0.0.0/8: the lab never listens on, or sends to, anything else.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import os
import selectors
import shlex
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

SSHD_BIN = Path("/usr/sbin/sshd")
SSH_KEYGEN_BIN = "ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")
MAX_LISTEN_SOCKS = 16  # sshd's compile-time limit on ListenAddress entries
READY_TIMEOUT_S = 10.0
_PROBE_TIMEOUT_S = 0.5
_PORT_PICK_ATTEMPTS = 20
_START_ATTEMPTS = 3
_PR_SET_PDEATHSIG = 1

# Every Sshd started in this process and not yet stopped, for the atexit fallback.
_LIVE: set[Sshd] = set()
_LIVE_LOCK = threading.Lock()


# The node interpreter for lab hosts: the system python starts fast (python3 on PATH may be
# a pyenv shim, a shell script).
NODE_PYTHON = "/usr/bin/python3"


class SshLabError(RuntimeError):
    """The lab could not set something up (sshd did not start, keygen failed, ...)."""


def sshd_available() -> bool:
    return SSHD_BIN.is_file() and os.access(SSHD_BIN, os.X_OK)


def _check_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback or ":" in address:
        raise ValueError(f"sshlab only uses IPv4 loopback addresses (127.0.0.0/8), got {address!r}")


def _hostport(address: str, port: int) -> str:
    return address if port == 22 else f"[{address}]:{port}"


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SshLabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _keygen(path: Path, comment: str) -> None:
    """An ed25519 key pair at `path` and `path`.pub, no passphrase; kept if already there."""
    if path.exists():
        return
    _run([SSH_KEYGEN_BIN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])


def _public_key_line(private_key: Path) -> str:
    """`ssh-ed25519 AAAA...` (type and base64, no comment) for a private key file."""
    fields = _run([SSH_KEYGEN_BIN, "-y", "-f", str(private_key)]).split()
    if len(fields) < 2:
        raise SshLabError(f"ssh-keygen -y gave no public key for {private_key}")
    return f"{fields[0]} {fields[1]}"


def _pick_port(addresses: list[str]) -> int:
    """A port that is free on every address right now (bound, then released)."""
    for _ in range(_PORT_PICK_ATTEMPTS):
        socks: list[socket.socket] = []
        try:
            first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(first)
            first.bind((addresses[0], 0))
            port: int = first.getsockname()[1]
            for address in addresses[1:]:
                other = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(other)
                other.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise SshLabError(f"no port free on all of {addresses}")


def _banner_ok(address: str, port: int) -> bool:
    """True when address:port accepts a TCP connection and sends an SSH-2.0 banner."""
    try:
        with socket.create_connection((address, port), timeout=_PROBE_TIMEOUT_S) as sock:
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"SSH-2.0-")


def _listening_inodes(address: str, port: int) -> set[str]:
    """Socket inodes of TCP sockets in LISTEN state on address:port (from /proc/net/tcp)."""
    local = f"{struct.unpack('=I', socket.inet_aton(address))[0]:08X}:{port:04X}"
    inodes: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":  # 0A = TCP_LISTEN
                inodes.add(fields[9])
    return inodes


def _owns_listener(pid: int, address: str, port: int) -> bool:
    """True when process `pid` itself holds the listening socket on address:port.

    A banner alone could come from another server already on that port; sshd also carries on
    when only some of its ListenAddress binds fail.
    """
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(address, port)}
    if not wanted:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") in wanted:
                return True
    return False


def _children_map() -> dict[int, list[int]]:
    """ppid -> child pids, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Field 2 (comm) may contain spaces and parentheses: split after its closing ')'.
        rest = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(rest[1]), []).append(int(entry))
    return children


def _descendants(pid: int) -> set[int]:
    children = _children_map()
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: tells a process from a later one reusing its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def _snapshot(pid: int) -> set[tuple[int, int]]:
    """(pid, start time) of each direct child of `pid` (each roots one connection's tree)."""
    found: set[tuple[int, int]] = set()
    for child in _children_map().get(pid, []):
        start = _start_time(child)
        if start is not None:
            found.add((child, start))
    return found


def _kill_trees(roots: set[tuple[int, int]]) -> None:
    """SIGKILL each root still alive (same start time) with its whole tree."""
    for pid, start in roots:
        if _start_time(pid) == start:
            _kill_tree(pid, include_root=True)


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _kill_tree(pid: int, *, include_root: bool) -> None:
    """SIGKILL `pid`'s whole process tree.

    sshd's per-connection children call setsid(), so they are not in the listener's process
    group: the tree is found through /proc parent links. It is frozen first (SIGSTOP, repeated
    until no new process shows up) so that nothing forks or gets re-parented between the
    snapshot and the SIGKILL.
    """
    frozen: set[int] = {pid} if include_root else set()
    if include_root:
        _signal(frozen, signal.SIGSTOP)
    while True:
        new = _descendants(pid) - frozen
        if not new:
            break
        _signal(new, signal.SIGSTOP)
        frozen |= new
    _signal(frozen, signal.SIGKILL)


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGKILL sshd if the thread that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Sshd:
    """One running `sshd -D -e` listener (see SshLab.start_sshd)."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        addresses: list[str],
        port: int,
        host_key: Path,
        host_key_pub: str,
        workdir: Path,
        log_path: Path,
    ) -> None:
        self.proc = proc
        self.addresses = list(addresses)
        self.port = port
        self.host_key = host_key
        self.host_key_pub = host_key_pub
        self.workdir = workdir
        self.log_path = log_path
        # (pid, start time) of children that outlived a killed listener, re-parented away.
        self._orphans: set[tuple[int, int]] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        return [(address, self.port) for address in self.addresses]

    def log(self) -> str:
        """What sshd wrote to stderr so far (LogLevel ERROR: normally empty)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the listener and wait for it, then SIGKILL its leftover session processes.

        (A terminated listener leaves established sessions running; a lab stop should not.)
        """
        try:
            if self.proc.poll() is None:
                # Freeze the listener so it forks nothing between the snapshot and SIGTERM.
                _signal({self.pid}, signal.SIGSTOP)
                self._orphans |= _snapshot(self.pid)
                self.proc.terminate()
                _signal({self.pid}, signal.SIGCONT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
        finally:
            _kill_trees(self._orphans)
            self._orphans.clear()
            self._forget()

    def kill(self) -> None:
        """SIGKILL the listener only: new connections are refused, sessions keep running.

        The sessions are remembered: stop() or kill_all() later kills them too.
        """
        if self.proc.poll() is None:
            _signal({self.pid}, signal.SIGSTOP)
            self._orphans |= _snapshot(self.pid)
            self.proc.kill()
        self.proc.wait()

    def kill_all(self) -> None:
        """SIGKILL the listener and every sshd child (and their commands): a host dying.

        Clients see their connections drop (RST/EOF) immediately.
        """
        if self.proc.poll() is None:
            _kill_tree(self.pid, include_root=True)
        self.proc.wait()
        _kill_trees(self._orphans)
        self._orphans.clear()
        self._forget()

    def _forget(self) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def __repr__(self) -> str:
        return f"Sshd(pid={self.pid}, addresses={self.addresses}, port={self.port})"


class SshLab:
    """Real sshd servers on loopback, sharing one client key and one authorized_keys file.

    Root logs in with `client_key` (ed25519, no passphrase); `user` is the login name.
    """

    def __init__(self, root: Path) -> None:
        if not sshd_available():
            raise SshLabError(
                f"{SSHD_BIN} not found: install the OpenSSH server (apt-get install openssh-server)"
            )
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
        self.client_key = self.root / "client_ed25519"
        _keygen(self.client_key, "dcctl-sshlab-client")
        self.client_key_pub = _public_key_line(self.client_key)
        self.authorized_keys = self.root / "authorized_keys"
        self.authorized_keys.write_text(self.client_key_pub + "\n")
        self.authorized_keys.chmod(0o600)
        # The lab's "nodes" log in with this as HOME, not the real one: this user's own
        # ~/.bashrc may do real work for every command (pyenv init takes a global lock), which
        # would make every node slow and, once a killed session leaves the lock behind, stall.
        self.node_home = self.root / "nodehome"
        self.node_home.mkdir(exist_ok=True)
        self.sshds: list[Sshd] = []
        self._counter = 0
        self._lock = threading.Lock()

    def new_host_key(self) -> Path:
        """A fresh ed25519 host key (private key path) in the lab dir."""
        with self._lock:
            self._counter += 1
            n = self._counter
        path = self.root / f"host_ed25519_{n}"
        _keygen(path, f"dcctl-sshlab-host-{n}")
        return path

    def start_sshd(
        self,
        addresses: list[str],
        port: int | None = None,
        host_key: Path | None = None,
        extra_config: tuple[str, ...] = (),
    ) -> Sshd:
        """Start one sshd listening on every address (at most 16) on one port; wait until ready.

        `port=None` picks a port free on every address. `host_key=None` generates a new key.
        `extra_config` lines come before the lab's own, and so override them (sshd takes the
        first value it reads for each keyword).
        Returns once every address:port answers with an SSH-2.0 banner.
        """
        if not addresses:
            raise ValueError("start_sshd needs at least one address")
        if len(addresses) > MAX_LISTEN_SOCKS:
            raise ValueError(
                f"sshd listens on at most {MAX_LISTEN_SOCKS} addresses, got {len(addresses)}: "
                "start several sshds"
            )
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"duplicate addresses: {addresses}")
        for address in addresses:
            _check_loopback(address)
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        key = Path(host_key) if host_key is not None else self.new_host_key()
        key_pub = _public_key_line(key)

        attempts = _START_ATTEMPTS if port is None else 1
        last_error: SshLabError | None = None
        for _ in range(attempts):
            chosen = port if port is not None else _pick_port(addresses)
            try:
                sshd = self._spawn(addresses, chosen, key, key_pub, extra_config)
            except SshLabError as exc:
                # Another process may have taken the picked port between pick and bind.
                last_error = exc
                if port is None and "Address already in use" in str(exc):
                    continue
                raise
            self.sshds.append(sshd)
            return sshd
        assert last_error is not None
        raise last_error

    def _spawn(
        self,
        addresses: list[str],
        port: int,
        key: Path,
        key_pub: str,
        extra_config: tuple[str, ...],
    ) -> Sshd:
        with self._lock:
            self._counter += 1
            workdir = self.root / f"sshd_{self._counter}_{port}"
        workdir.mkdir()
        config = workdir / "sshd_config"
        lines = [*extra_config, *(f"ListenAddress {address}" for address in addresses)]
        lines += [
            f"Port {port}",
            f"HostKey {key}",
            f"PidFile {workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "StrictModes no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "MaxStartups 1000:30:1000",
            "MaxSessions 1000",
            "LoginGraceTime 30",
            "LogLevel ERROR",
            "AcceptEnv none",
            "PrintMotd no",
            f"SetEnv HOME={self.node_home}",
        ]
        config.write_text("\n".join(lines) + "\n")
        log_path = workdir / "sshd.stderr"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [str(SSHD_BIN), "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keep terminal signals (Ctrl-C) away from it
                preexec_fn=_set_pdeathsig,
            )
        sshd = Sshd(proc, addresses, port, key, key_pub, workdir, log_path)
        with _LIVE_LOCK:
            _LIVE.add(sshd)
        try:
            self._wait_ready(sshd)
        except BaseException:
            sshd.stop()
            raise
        return sshd

    @staticmethod
    def _wait_ready(sshd: Sshd, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll until sshd itself listens on every address and each sends an SSH-2.0 banner.

        Fails fast when sshd exits (bad config, port taken) and at the deadline otherwise.
        """
        deadline = time.monotonic() + timeout
        pending = list(sshd.addresses)
        while pending:
            if sshd.proc.poll() is not None:
                raise SshLabError(
                    f"sshd on {sshd.addresses} port {sshd.port} exited with "
                    f"{sshd.proc.returncode} before becoming ready; stderr:\n{sshd.log()}"
                )
            log = sshd.log()
            if "Bind to port" in log:  # some ListenAddress failed; sshd runs on without it
                raise SshLabError(
                    f"sshd (pid {sshd.pid}) could not listen on all of {sshd.addresses} "
                    f"port {sshd.port}; stderr:\n{log}"
                )
            address = pending[0]
            if _owns_listener(sshd.pid, address, sshd.port) and _banner_ok(address, sshd.port):
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise SshLabError(
                    f"sshd (pid {sshd.pid}) not ready on {address}:{sshd.port} after "
                    f"{timeout:.0f}s; stderr:\n{sshd.log()}"
                )
            # A refused connect returns at once: wait on the process briefly instead of spinning.
            with contextlib.suppress(subprocess.TimeoutExpired):
                sshd.proc.wait(0.02)

    def host_vars(self, sshd: Sshd, address: str | None = None) -> dict[str, Any]:
        """Inventory host variables that reach `sshd` on `address` (default: its first)."""
        return {
            "host": address if address is not None else sshd.addresses[0],
            "port": sshd.port,
            "user": self.user,
            "key_file": str(self.client_key),
        }

    def stop(self) -> None:
        """Stop every sshd this lab started (sessions included). Safe to call twice."""
        errors: list[BaseException] = []
        for sshd in self.sshds:
            try:
                sshd.stop()
            except Exception as exc:
                errors.append(exc)
        self.sshds.clear()
        if errors:
            raise SshLabError(f"errors while stopping sshds: {errors}")

    def __enter__(self) -> SshLab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def known_hosts_lines(sshd: Sshd) -> list[str]:
    """OpenSSH known_hosts lines for every address of `sshd` (`[addr]:port` when port != 22)."""
    return [f"{_hostport(address, sshd.port)} {sshd.host_key_pub}" for address in sshd.addresses]


def write_known_hosts(path: Path, sshds: list[Sshd]) -> Path:
    path = Path(path)
    lines = [line for sshd in sshds for line in known_hosts_lines(sshd)]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def refused_endpoint(address: str = "127.0.0.1") -> tuple[str, int]:
    """An (address, port) on which nothing listens right now: connecting is refused."""
    _check_loopback(address)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
    return address, port


class SilentListener:
    """Accepts TCP connections on (address, free port) and never sends a byte.

    Connections are held open until close(): an SSH client waiting for the banner hangs.
    """

    def __init__(self, address: str = "127.0.0.1") -> None:
        _check_loopback(address)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((address, 0))
        self._sock.listen(128)
        self._sock.setblocking(False)
        self.address: str = address
        self.port: int = self._sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        self._wake_r, self._wake_w = socket.socketpair()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"SilentListener-{address}:{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def endpoint(self) -> tuple[str, int]:
        return self.address, self.port

    def _serve(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        conn, _addr = self._sock.accept()
                        self.connections.append(conn)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wake_w.send(b"x")
        self._thread.join(5)
        for conn in self.connections:
            conn.close()
        self.connections.clear()
        self._sock.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def lab_host(lab: SshLab, sshd: Sshd, name: str, address: str, **extra: Any) -> dict[str, Any]:
    """An inventory host for one address of a lab sshd, run with this interpreter."""
    return {"name": name, **lab.host_vars(sshd, address), "python": NODE_PYTHON, **extra}


def endpoint_host(lab: SshLab, name: str, address: str, port: int) -> dict[str, Any]:
    """An inventory host at any address and port (a refused or silent one), with the lab key."""
    return {"name": name, "host": address, "port": port, "key_file": str(lab.client_key)}


def write_inventory(
    path: Path, hosts: list[dict[str, Any]], group_vars: dict[str, Any] | None = None
) -> Path:
    """A dcctl YAML inventory: {"all": {"vars": group_vars, "hosts": {name: vars}}}.

    Each host dict needs a "name"; its other keys become that host's variables.
    """
    table: dict[str, dict[str, Any]] = {}
    for host in hosts:
        host_vars = dict(host)
        name = host_vars.pop("name")
        if name in table:
            raise ValueError(f"duplicate host name {name!r}")
        table[str(name)] = host_vars
    group: dict[str, Any] = {}
    if group_vars:
        group["vars"] = dict(group_vars)
    group["hosts"] = table
    path = Path(path)
    path.write_text(yaml.safe_dump({"all": group}, sort_keys=False))
    return path


# --- Key types, frozen hosts and ssh-agent (added for host key and key loading tests) ---

SSH_AGENT_BIN = "ssh-agent"
SSH_ADD_BIN = "ssh-add"
_AGENT_START_ATTEMPTS = 200
_SSHD_COMM = "sshd"


def keygen(path: Path, key_type: str = "ed25519", passphrase: str = "", pem: bool = False) -> Path:
    """A new key pair at `path` and `path`.pub, of `key_type` (ed25519, ecdsa, rsa).

    `pem` writes the private key in the legacy PEM format (`ssh-keygen -m PEM`) instead of
    OpenSSH's own; a passphrase encrypts it either way.
    """
    argv = [SSH_KEYGEN_BIN, "-q", "-t", key_type, "-N", passphrase, "-C", path.name]
    argv += ["-f", str(path)]
    if key_type == "rsa":
        argv += ["-b", "2048"]  # the default 3072 only makes the tests slower
    if pem:
        argv += ["-m", "PEM"]
    _run(argv)
    return path


def public_key_line(private_key: Path) -> str:
    """`type base64` of the key pair at `private_key`, read from its .pub file."""
    fields = Path(f"{private_key}.pub").read_text().split()
    return f"{fields[0]} {fields[1]}"


def new_typed_host_key(lab: SshLab, key_type: str) -> Path:
    """A fresh host key of `key_type` (ecdsa, rsa, ed25519) in the lab dir."""
    with lab._lock:
        lab._counter += 1
        n = lab._counter
    return keygen(lab.root / f"host_{key_type}_{n}", key_type)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def frozen(sshd: Sshd) -> Iterator[set[int]]:
    """A host that froze: sshd's listener and every per-connection sshd process SIGSTOPped,
    SIGCONTed on exit. The commands they started run on (so the node's own `timeout` still
    works); nothing reaches the client any more.

    Repeats until no new sshd process shows up, so none forks past the freeze.
    """
    stopped: set[int] = set()
    try:
        new = {sshd.pid}
        while new:
            _signal(new, signal.SIGSTOP)
            stopped |= new
            new = {p for p in _descendants(sshd.pid) if _comm(p) == _SSHD_COMM} - stopped
        yield stopped
    finally:
        _signal(stopped, signal.SIGCONT)


def write_askpass(path: Path, secret: str) -> Path:
    """An SSH_ASKPASS program that answers `secret` (for ssh-add without a terminal)."""
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(secret)}\n")
    path.chmod(0o700)
    return path


def start_ssh_agent(
    socket_path: Path, keys: list[Path], passphrase: str | None = None
) -> subprocess.Popen[bytes]:
    """A real `ssh-agent -D` on `socket_path` holding `keys` (added with `passphrase`, given
    through SSH_ASKPASS). The caller terminates it; it dies with this process too."""
    agent = subprocess.Popen(
        [SSH_AGENT_BIN, "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_set_pdeathsig,
    )
    try:
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        if passphrase is not None:
            askpass = write_askpass(Path(f"{socket_path}.askpass"), passphrase)
            env.update(SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        for key in keys:
            _add_to_agent(agent, key, env)
    except BaseException:
        agent.terminate()
        agent.wait()
        raise
    return agent


def _add_to_agent(agent: subprocess.Popen[bytes], key: Path, env: dict[str, str]) -> None:
    """ssh-add fails until the agent has bound its socket: retried while the agent lives."""
    error = ""
    for _ in range(_AGENT_START_ATTEMPTS):
        if agent.poll() is not None:
            raise SshLabError(f"ssh-agent exited with {agent.returncode}")
        added = subprocess.run(
            [SSH_ADD_BIN, str(key)], env=env, capture_output=True, text=True, timeout=30,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if added.returncode == 0:
            return
        error = added.stderr.strip()
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.wait(0.05)
    raise SshLabError(f"ssh-add {key} failed: {error}")


def stop_all() -> None:
    """SIGKILL every sshd (and session) still running from this process."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for sshd in live:
        with contextlib.suppress(Exception):
            sshd.kill_all()


atexit.register(stop_all)


# --- Agents that refuse to sign, and nodes whose `timeout` does not stop a task ---


def start_declining_agent(socket_path: Path, keys: list[Path]) -> subprocess.Popen[bytes]:
    """A real `ssh-agent -D` holding `keys` added with `ssh-add -c` (confirm each use), whose
    SSH_ASKPASS declines every confirmation: the agent lists the keys and refuses to sign,
    as it does for a declined prompt or a FIDO key nobody touched. The caller terminates it."""
    decline = Path(f"{socket_path}.decline")
    decline.write_text("#!/bin/sh\nexit 1\n")
    decline.chmod(0o700)
    agent_env = {**os.environ, "SSH_ASKPASS": str(decline), "SSH_ASKPASS_REQUIRE": "force",
                 "DISPLAY": ":0"}  # fmt: skip
    agent = subprocess.Popen(
        [SSH_AGENT_BIN, "-D", "-a", str(socket_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=agent_env,
        preexec_fn=_set_pdeathsig,
    )
    try:
        _wait_for_socket(agent, socket_path)
        env = {**os.environ, "SSH_AUTH_SOCK": str(socket_path)}
        for key in keys:
            added = subprocess.run(
                [SSH_ADD_BIN, "-c", str(key)], env=env, capture_output=True, text=True,
                timeout=30, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            if added.returncode != 0:
                raise SshLabError(f"ssh-add -c {key} failed: {added.stderr.strip()}")
    except BaseException:
        agent.terminate()
        agent.wait()
        raise
    return agent


def _wait_for_socket(agent: subprocess.Popen[bytes], socket_path: Path) -> None:
    for _ in range(_AGENT_START_ATTEMPTS):
        if agent.poll() is not None:
            raise SshLabError(f"ssh-agent exited with {agent.returncode}")
        if socket_path.exists():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            agent.wait(0.05)
    raise SshLabError(f"ssh-agent never made its socket {socket_path}")


def timeout_that_never_fires(bin_dir: Path) -> str:
    """A `timeout` in `bin_dir` that runs its command with no limit, and the sshd_config line
    that puts it first on the node's PATH (for start_sshd's extra_config): a task that the
    node-side watchdog fails to stop (it left its process group, say), so only the
    controller's own deadline can end the wait."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    fake = bin_dir / "timeout"
    # dcctl runs `timeout -k GRACE SECONDS argv...`: drop the three options, run the rest.
    fake.write_text('#!/bin/sh\nshift 3\nexec "$@"\n')
    fake.chmod(0o755)
    return f"SetEnv PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin"
