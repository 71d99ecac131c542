"""Host key policy: known keys pass, changed keys are refused, unknown keys only on request."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from dcctl.transport.base import HostError
from dcctl.transport.ssh import HostKeyStore, SshOptions


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def store(tmp_path: Path, user_lines: list[str], accept_new: bool = False) -> HostKeyStore:
    user_file = tmp_path / "user_known_hosts"
    user_file.write_text("".join(line + "\n" for line in user_lines))
    return HostKeyStore(
        SshOptions(
            trusted_keys_file=tmp_path / "state" / "known_hosts",
            user_known_hosts=user_file,
            accept_new_host_keys=accept_new,
        )
    )


def line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}"


def test_plain_and_hashed_entries_are_found(tmp_path: Path, keys: tuple) -> None:
    known, _ = keys
    hashed = paramiko.HostKeys.hash_host("[10.0.0.2]:2222")
    hosts = store(tmp_path, ["# comment", line("gpu1,10.0.0.1", known), line(hashed, known)])
    hosts.verify("gpu1", known)
    hosts.verify("10.0.0.1", known)
    hosts.verify("[10.0.0.2]:2222", known)
    assert hosts.known_types("[10.0.0.2]:2222") == [known.get_name()]
    assert hosts.known_types("gpu2") == []


def test_changed_key_is_refused_even_when_accepting_new(tmp_path: Path, keys: tuple) -> None:
    known, impostor = keys
    hosts = store(tmp_path, [line("gpu1", known)], accept_new=True)
    with pytest.raises(HostError) as error:
        hosts.verify("gpu1", impostor)
    assert error.value.kind == "host_key"
    assert "CHANGED" in error.value.message


def test_unknown_key_is_refused_by_default(tmp_path: Path, keys: tuple) -> None:
    with pytest.raises(HostError) as error:
        store(tmp_path, []).verify("gpu9", keys[0])
    assert "unknown host key" in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()


def test_accepted_key_is_recorded_privately_and_remembered(tmp_path: Path, keys: tuple) -> None:
    known, impostor = keys
    hosts = store(tmp_path, [], accept_new=True)
    hosts.verify("gpu9", known)
    trusted = tmp_path / "state" / "known_hosts"
    assert trusted.read_text() == line("gpu9", known) + "\n"
    assert trusted.stat().st_mode & 0o777 == 0o600
    with pytest.raises(HostError):
        hosts.verify("gpu9", impostor)
    # A later run reads it back.
    store(tmp_path, []).verify("gpu9", known)
