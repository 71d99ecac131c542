"""The keys a run offers: key files (each read once) and the ssh-agent's keys."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import paramiko

from dcctl.transport.ssh.private_key import KeyFileError, load_private_key, passphrase_from_env


class _SerializedAgentKey(paramiko.AgentKey):
    """An agent key whose signing requests never interleave with another thread's, and which
    records why the agent would not sign.

    paramiko's Agent connection has no lock: two hosts signing at once over one agent socket
    read each other's replies and both fail authentication.
    """

    def __init__(self, key: paramiko.AgentKey, lock: threading.Lock) -> None:
        super().__init__(key.agent, key.blob, key.comment)
        self._sign_lock = lock
        self.refusal: str | None = None

    def for_one_offer(self) -> _SerializedAgentKey:
        """A copy for one host's offer, so what its signing records is that host's alone."""
        return _SerializedAgentKey(self, self._sign_lock)

    def sign_ssh_data(self, data: Any, algorithm: str | None = None) -> Any:
        with self._sign_lock:
            try:
                return super().sign_ssh_data(data, algorithm)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                # A locked agent, a declined `ssh-add -c` confirmation, a FIDO key not
                # touched. This runs in paramiko's transport thread, where the exception ends
                # the connection; the handshake reads this note to say what happened.
                self.refusal = (
                    f"ssh-agent refused to sign with {_describe(self)}: {exc} (agent locked, "
                    "confirmation declined or security key not touched?)"
                )
                raise


def _describe(key: paramiko.AgentKey) -> str:
    fingerprint = f"{key.get_name()} {key.fingerprint}"
    return f"{key.comment} ({fingerprint})" if key.comment else fingerprint


def one_offer(key: paramiko.PKey) -> paramiko.PKey:
    """The key to hand to one auth attempt (agent keys: a copy that records refusals)."""
    return key.for_one_offer() if isinstance(key, _SerializedAgentKey) else key


def signing_refusal(key: paramiko.PKey) -> str | None:
    """Why the agent would not sign during the attempt made with `key`, if it would not."""
    return key.refusal if isinstance(key, _SerializedAgentKey) else None


def _offered_blob(key: paramiko.PKey) -> bytes:
    """The public blob auth sends for `key`: its certificate when one is attached."""
    return key.public_blob.key_blob if key.public_blob else key.asbytes()


def _unique(keys: list[paramiko.PKey]) -> list[paramiko.PKey]:
    """Each key once, first place kept: a key that is both a file and in the agent would
    otherwise be offered twice, and each refused offer uses up one of sshd's MaxAuthTries."""
    seen: set[bytes] = set()
    unique: list[paramiko.PKey] = []
    for key in keys:
        blob = _offered_blob(key)
        if blob not in seen:
            seen.add(blob)
            unique.append(key)
    return unique


class KeyRing:
    """Private keys and agent keys, each loaded at most once per run.

    A key that cannot be used is a note, never an exception: one bad file must not keep the
    other files or the agent's keys from being tried, and the notes explain an auth failure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[str, paramiko.PKey | str] = {}
        self._agent: paramiko.Agent | None = None
        self._agent_keys: tuple[list[paramiko.PKey], list[str]] | None = None
        self._sign_lock = threading.Lock()

    def keys_for(self, identity_files: Sequence[str]) -> tuple[list[paramiko.PKey], list[str]]:
        """Keys to offer, in order, and a note per key that could not be used."""
        keys: list[paramiko.PKey] = []
        notes: list[str] = []
        for path in identity_files:
            loaded = self._load_file(path)
            if isinstance(loaded, str):
                notes.append(loaded)
            else:
                keys.append(loaded)
        agent_keys, agent_notes = self._load_agent()
        return _unique(keys + agent_keys), notes + agent_notes

    def _load_file(self, path: str) -> paramiko.PKey | str:
        with self._lock:
            if path not in self._files:
                try:
                    self._files[path] = load_private_key(path, passphrase_from_env())
                except KeyFileError as exc:
                    self._files[path] = str(exc)
            return self._files[path]

    def _load_agent(self) -> tuple[list[paramiko.PKey], list[str]]:
        with self._lock:
            if self._agent_keys is None:
                self._agent_keys = self._ask_agent()
            return self._agent_keys

    def _ask_agent(self) -> tuple[list[paramiko.PKey], list[str]]:
        socket_path = os.environ.get("SSH_AUTH_SOCK")
        if not socket_path:
            return [], []
        try:
            # paramiko.Agent itself treats an agent it cannot connect to as one with no keys.
            self._agent = paramiko.Agent()
            keys = self._agent.get_keys()
        except paramiko.SSHException as exc:
            return [], [f"ssh-agent at {socket_path} gave no keys: {exc}"]
        return [_SerializedAgentKey(key, self._sign_lock) for key in keys], []

    def close(self) -> None:
        with self._lock:
            if self._agent is not None:
                self._agent.close()
