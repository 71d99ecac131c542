"""Host key policy, as OpenSSH's: known keys pass, any other key of a known host is a changed
key, revoked keys never pass, and unknown hosts are trusted only on request (and recorded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path

import paramiko

from dcctl.transport.base import HostError
from dcctl.transport.ssh.endpoint import split_host_port
from dcctl.transport.ssh.known_hosts import (
    Entry,
    KnownKey,
    Marker,
    append_once,
    host_matches,
    read_entries,
)
from dcctl.transport.ssh.options import KnownHostsFiles, SshOptions

_RUN_DEFAULTS = KnownHostsFiles()


class _FileKeys:
    """One known_hosts file, indexed: literal names in a dict, so a 1,000-host run does not
    scan 1,000 lines per host; only hashed (HashKnownHosts) and wildcard lines are tested one
    by one, with their salts and patterns decoded once, when the file is read."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.named: dict[str, list[KnownKey]] = {}
        self.patterned: list[Entry] = []
        for entry in entries:
            names = entry.plain_names
            if names is None:
                self.patterned.append(entry)
            for name in names or ():
                self.add(name, entry.key)

    def add(self, name: str, key: KnownKey) -> None:
        self.named.setdefault(name, []).append(key)

    def keys_for(self, name: str, name_bytes: bytes) -> list[KnownKey]:
        # Read without the store's lock: under the GIL a dict lookup and a list copy are
        # atomic, and the only writer (a recorded key) appends.
        keys = list(self.named.get(name, ()))
        keys.extend(e.key for e in self.patterned if host_matches(e.patterns, name, name_bytes))
        return keys


def _read_file(path: Path) -> _FileKeys:
    try:
        return _FileKeys(read_entries(path))
    except (FileNotFoundError, NotADirectoryError):
        # As OpenSSH: a known_hosts file that is absent holds no keys (a path through a file,
        # e.g. a broken --state-dir, cannot hold one either).
        return _FileKeys(())
    except OSError as exc:
        # Skipping a file we cannot read could turn a known host into an unknown one, which
        # --accept-new-host-keys would then trust: refuse to judge instead.
        raise HostError(
            "host_key", f"known_hosts file {path} cannot be read: {exc.strerror or exc}"
        ) from exc


class HostKeyStore:
    """known_hosts files read and indexed once per run; new keys appended to dcctl's own file
    on request.

    A host's keys come from its user files (~/.ssh/known_hosts, known_hosts2), the global ones
    (/etc/ssh/ssh_known_hosts, ssh_known_hosts2) and dcctl's own file, merged as OpenSSH merges
    them; ~/.ssh/config may name other user or global files per host. What a name finds is
    cached, so the known_types() and verify() of one handshake scan the hashed lines once.
    """

    def __init__(self, options: SshOptions) -> None:
        self._options = options
        self._files: dict[Path, _FileKeys] = {}
        # name -> the files searched -> what they hold for it
        self._found: dict[str, dict[tuple[Path, ...], list[KnownKey]]] = {}
        self._lock = threading.Lock()

    def known_types(self, name: str, files: KnownHostsFiles = _RUN_DEFAULTS) -> list[str]:
        """Key types recorded for `name`, to ask the server for one of them."""
        keys = self._keys_for(name, files)
        return list(dict.fromkeys(k.key_type for k in keys if k.marker is Marker.HOST_KEY))

    def verify(self, name: str, key: paramiko.PKey, files: KnownHostsFiles = _RUN_DEFAULTS) -> None:
        offered = KnownKey(Marker.HOST_KEY, key.get_name(), key.asbytes(), "offered by the host")
        if _is_known(name, key, offered, self._keys_for(name, files)):
            return
        if not self._options.accept_new_host_keys:
            raise _unknown(name, key)
        with self._lock:
            self._record(name, key, offered)

    def _paths(self, files: KnownHostsFiles) -> tuple[Path, ...]:
        user = self._options.user_known_hosts if files.user is None else files.user
        system = self._options.global_known_hosts if files.system is None else files.system
        return (*user, *system, self._options.trusted_keys_file)

    def _keys_for(self, name: str, files: KnownHostsFiles) -> list[KnownKey]:
        name = name.lower()
        paths = self._paths(files)
        with self._lock:
            found = self._found.get(name, {}).get(paths)
        if found is None:
            found = self._scan(name, paths)  # outside the lock: hosts look up in parallel
            with self._lock:
                found = self._found.setdefault(name, {}).setdefault(paths, found)
        return found

    def _scan(self, name: str, paths: tuple[Path, ...]) -> list[KnownKey]:
        name_bytes = name.encode()
        return [key for path in paths for key in self._file(path).keys_for(name, name_bytes)]

    def _file(self, path: Path) -> _FileKeys:
        with self._lock:
            if path not in self._files:
                self._files[path] = _read_file(path)
            return self._files[path]

    def _record(self, name: str, key: paramiko.PKey, offered: KnownKey) -> None:
        """Called with the lock held."""
        trusted = self._options.trusted_keys_file
        try:
            others = append_once(trusted, name, offered)
        except OSError as exc:
            raise _unrecorded(name, key, trusted, exc) from exc
        if others:
            raise _changed(name, key, others)
        if trusted in self._files:
            self._files[trusted].add(name.lower(), offered)
        self._found.pop(name.lower(), None)  # the next lookup of this name finds the new key


def _is_known(name: str, key: paramiko.PKey, offered: KnownKey, known: list[KnownKey]) -> bool:
    """True for a recorded key; False for an unknown host; HostError for any other verdict."""
    revoked = [k for k in known if k.marker is Marker.REVOKED and k.blob == offered.blob]
    if revoked:
        raise _revoked(name, key, revoked[0])
    host_keys = [k for k in known if k.marker is Marker.HOST_KEY]
    if any(k.blob == offered.blob for k in host_keys):
        return True
    # A host with any recorded key is a known host: whatever type the offered key is,
    # it is not one of its keys (OpenSSH's rule; accepting it would trust a MITM).
    if host_keys:
        raise _changed(name, key, host_keys)
    authorities = [k for k in known if k.marker is Marker.CERT_AUTHORITY]
    if authorities:
        raise _certificate_only(name, key, authorities[0])
    return False


def _describe(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _revoked(name: str, key: paramiko.PKey, entry: KnownKey) -> HostError:
    return HostError(
        "host_key",
        f"host key for {name} ({_describe(key)}) is REVOKED by a @revoked line at "
        f"{entry.source}; refusing to connect. The host needs a new host key",
    )


def _changed(name: str, key: paramiko.PKey, recorded: list[KnownKey]) -> HostError:
    where = ", ".join(f"{k.key_type} at {k.source}" for k in recorded[:3])
    return HostError(
        "host_key",
        f"host key for {name} has CHANGED: it offers {_describe(key)}, which is not among the "
        f"keys recorded for it ({where}); refusing to connect. If the host was reinstalled, "
        f"remove its old lines (ssh-keygen -R '{name}' -f FILE) and verify the new key",
    )


def _certificate_only(name: str, key: paramiko.PKey, authority: KnownKey) -> HostError:
    try:
        address, port = split_host_port(name, name)
    except HostError:  # a HostKeyAlias need not look like host:port
        address, port = name, None
    port_option = f"-p {port} " if port else ""
    return HostError(
        "host_key",
        f"{name} is trusted only through a @cert-authority line ({authority.source}), and "
        "certificate-based host keys are not supported (paramiko cannot verify host "
        f"certificates); refusing to connect. Add the host's plain key ({_describe(key)}) "
        f"to ~/.ssh/known_hosts once its fingerprint is checked: "
        f"ssh-keyscan -t {key.get_name()} {port_option}{address}",
    )


def _unrecorded(name: str, key: paramiko.PKey, path: Path, exc: OSError) -> HostError:
    # Trusting a key that is not written down would make every later run trust anew,
    # whatever key the host offers then: refuse instead.
    return HostError(
        "host_key",
        f"new host key for {name} ({_describe(key)}) not trusted: cannot record it in {path} "
        f"({exc.strerror or exc}); make the state dir writable (or use --state-dir DIR), or "
        "add the key to ~/.ssh/known_hosts",
    )


def _unknown(name: str, key: paramiko.PKey) -> HostError:
    return HostError(
        "host_key",
        f"unknown host key for {name} ({_describe(key)}); "
        "add it to ~/.ssh/known_hosts or rerun with --accept-new-host-keys",
    )
