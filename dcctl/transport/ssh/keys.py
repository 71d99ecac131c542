"""The keys a run offers: key files (each read once) and the ssh-agent's keys."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import paramiko

from dcctl.transport.ssh.private_key import KeyFileError, load_private_key, passphrase_from_env


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
        return keys + agent_keys, notes + agent_notes

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
