"""Host key policy, as OpenSSH's: known keys pass, any other key of a known host is a changed
key, revoked keys never pass, and unknown hosts are trusted only on request (and recorded).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import paramiko

from dcctl.transport.base import HostError
from dcctl.transport.ssh.endpoint import split_host_port
from dcctl.transport.ssh.known_hosts import Entry, KnownKey, Marker, append_once, read_entries
from dcctl.transport.ssh.options import SshOptions


class HostKeyStore:
    """known_hosts read and indexed once per run; new keys appended to dcctl's own file on request.

    Literal host names are looked up in a dict, so a 1,000-host run does not scan 1,000 lines per
    host; only hashed (HashKnownHosts) and wildcard entries are tested one by one.
    """

    def __init__(self, options: SshOptions) -> None:
        self._named: dict[str, list[KnownKey]] = {}
        self._patterned: list[Entry] = []
        for path in (options.user_known_hosts, options.trusted_keys_file):
            if path.is_file():
                self._index(read_entries(path))
        self._trusted_file = options.trusted_keys_file
        self._accept_new = options.accept_new_host_keys
        self._lock = threading.Lock()

    def _index(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            names = entry.plain_names
            if names is None:
                self._patterned.append(entry)
                continue
            for name in names:
                self._named.setdefault(name, []).append(entry.key)

    def _keys_for(self, name: str) -> list[KnownKey]:
        keys = list(self._named.get(name.lower(), ()))
        keys.extend(entry.key for entry in self._patterned if entry.matches(name))
        return keys

    def known_types(self, name: str) -> list[str]:
        """Key types recorded for `name`, to ask the server for one of them."""
        with self._lock:
            keys = self._keys_for(name)
        return list(dict.fromkeys(k.key_type for k in keys if k.marker is Marker.HOST_KEY))

    def verify(self, name: str, key: paramiko.PKey) -> None:
        offered = KnownKey(Marker.HOST_KEY, key.get_name(), key.asbytes(), "offered by the host")
        with self._lock:
            known = self._keys_for(name)
            revoked = [k for k in known if k.marker is Marker.REVOKED and k.blob == offered.blob]
            if revoked:
                raise _revoked(name, key, revoked[0])
            host_keys = [k for k in known if k.marker is Marker.HOST_KEY]
            if any(k.blob == offered.blob for k in host_keys):
                return
            # A host with any recorded key is a known host: whatever type the offered key is,
            # it is not one of its keys (OpenSSH's rule; accepting it would trust a MITM).
            if host_keys:
                raise _changed(name, key, host_keys)
            authorities = [k for k in known if k.marker is Marker.CERT_AUTHORITY]
            if authorities:
                raise _certificate_only(name, key, authorities[0])
            if not self._accept_new:
                raise _unknown(name, key)
            self._record(name, key, offered)

    def _record(self, name: str, key: paramiko.PKey, offered: KnownKey) -> None:
        others = append_once(self._trusted_file, name, offered)
        if others:
            raise _changed(name, key, others)
        self._named.setdefault(name.lower(), []).append(offered)


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
    address, port = split_host_port(name)
    port_option = f"-p {port} " if port else ""
    return HostError(
        "host_key",
        f"{name} is trusted only through a @cert-authority line ({authority.source}), and "
        "certificate-based host keys are not supported (paramiko cannot verify host "
        f"certificates); refusing to connect. Add the host's plain key ({_describe(key)}) "
        f"to ~/.ssh/known_hosts once its fingerprint is checked: "
        f"ssh-keyscan -t {key.get_name()} {port_option}{address}",
    )


def _unknown(name: str, key: paramiko.PKey) -> HostError:
    return HostError(
        "host_key",
        f"unknown host key for {name} ({_describe(key)}); "
        "add it to ~/.ssh/known_hosts or rerun with --accept-new-host-keys",
    )
