"""Client keys against a real sshd: encrypted keys through ssh-agent or the environment,
and key files OpenSSH would refuse, each an `auth` error that says how to fix it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_dcctl
from sshlab import (
    NODE_PYTHON,
    Sshd,
    SshLab,
    keygen,
    public_key_line,
    start_declining_agent,
    start_ssh_agent,
    write_inventory,
    write_known_hosts,
)

from dcctl.transport.ssh import PASSPHRASE_ENV

PASSPHRASE = "correct horse 7"
# name -> (key type, PEM format): OpenSSH's own format and the legacy PEM one.
ENCRYPTED = {"ed25519": ("ed25519", False), "ecdsa-pem": ("ecdsa", True), "rsa": ("rsa", False)}


@dataclass(frozen=True)
class KeyLab:
    sshd: Sshd
    encrypted: dict[str, Path]
    plain: Path


@pytest.fixture(scope="module")
def key_lab(ssh_lab: SshLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyLab]:
    """An sshd on 127.0.0.30 that accepts only this module's keys."""
    root = tmp_path_factory.mktemp("client-keys")
    encrypted = {
        name: keygen(root / name, kind, PASSPHRASE, pem) for name, (kind, pem) in ENCRYPTED.items()
    }
    plain = keygen(root / "plain", "ecdsa")
    authorized = root / "authorized_keys"
    authorized.write_text("".join(public_key_line(k) + "\n" for k in [*encrypted.values(), plain]))
    sshd = ssh_lab.start_sshd(["127.0.0.30"], extra_config=(f"AuthorizedKeysFile {authorized}",))
    try:
        yield KeyLab(sshd, encrypted, plain)
    finally:
        sshd.stop()


@pytest.fixture
def agent_with_encrypted_key(tmp_path: Path, key_lab: KeyLab) -> Iterator[str]:
    """A real ssh-agent holding the encrypted ed25519 key, unlocked through SSH_ASKPASS."""
    socket_path = tmp_path / "agent.sock"
    agent = start_ssh_agent(socket_path, [key_lab.encrypted["ed25519"]], PASSPHRASE)
    try:
        yield str(socket_path)
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def check(tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab, key_files: dict[str, Path],
          **env: str) -> dict[str, dict[str, Any]]:  # fmt: skip
    """`dcctl check` of one lab host per key file (named by the dict's keys): host -> error."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    write_known_hosts(state / "known_hosts", [key_lab.sshd])
    hosts = [
        {**ssh_lab.host_vars(key_lab.sshd), "name": name, "key_file": str(path),
         "python": NODE_PYTHON}
        for name, path in key_files.items()
    ]  # fmt: skip
    result = run_dcctl(
        ["-i", str(write_inventory(tmp_path / "inv.yaml", hosts)), "--state-dir", str(state),
         "--connect-timeout", "5", "--json", "check"],
        home=tmp_path / "home",
        env=env,
    )  # fmt: skip
    assert result.stdout, result.stderr
    return {host["name"]: host["error"] for host in result.json()["hosts"]}


def open_copy(tmp_path: Path, key: Path) -> Path:
    """A copy of `key` that group and others may read (mode 0644)."""
    copy = tmp_path / "id_world_readable"
    shutil.copy(key, copy)
    copy.chmod(0o644)
    return copy


def test_an_encrypted_key_loaded_in_ssh_agent_authenticates(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab, agent_with_encrypted_key: str
) -> None:
    """The normal setup: the inventory names the encrypted file, ssh-agent holds the key.
    A key file OpenSSH would ignore (mode 0644) is skipped and the agent's key still used."""
    key_files = {
        "encrypted-file": key_lab.encrypted["ed25519"],
        "open-file": open_copy(tmp_path, key_lab.plain),
    }
    errors = check(tmp_path, ssh_lab, key_lab, key_files, SSH_AUTH_SOCK=agent_with_encrypted_key)
    assert errors == {"encrypted-file": None, "open-file": None}


def test_the_passphrase_from_the_environment_opens_each_key_format(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    errors = check(tmp_path, ssh_lab, key_lab, key_lab.encrypted, **{PASSPHRASE_ENV: PASSPHRASE})
    assert errors == dict.fromkeys(ENCRYPTED)


def test_an_encrypted_key_without_agent_or_passphrase_is_an_auth_error_with_the_fix(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    errors = check(tmp_path, ssh_lab, key_lab, key_lab.encrypted)
    for name, path in key_lab.encrypted.items():
        assert errors[name]["kind"] == "auth", errors[name]
        assert f"key file {path} is encrypted" in errors[name]["message"]
        assert f"ssh-add {path}" in errors[name]["message"]
        assert PASSPHRASE_ENV in errors[name]["message"]


def test_a_wrong_passphrase_is_an_auth_error_saying_so(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    errors = check(tmp_path, ssh_lab, key_lab, key_lab.encrypted, **{PASSPHRASE_ENV: "guess"})
    for name in ENCRYPTED:
        assert errors[name]["kind"] == "auth", errors[name]
        assert f"the passphrase in {PASSPHRASE_ENV} is wrong" in errors[name]["message"]


def test_key_files_openssh_would_refuse_are_auth_errors_naming_them(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    world_readable = open_copy(tmp_path, key_lab.plain)
    key_files = {
        "world-readable": world_readable,
        "public": Path(f"{key_lab.plain}.pub"),
        "directory": tmp_path,
    }
    errors = check(tmp_path, ssh_lab, key_lab, key_files)
    assert {error["kind"] for error in errors.values()} == {"auth"}
    assert (
        f"UNPROTECTED PRIVATE KEY FILE: permissions 0644 for '{world_readable}' are too open"
        in errors["world-readable"]["message"]
    )
    assert f"chmod 600 {world_readable}" in errors["world-readable"]["message"]
    assert "is a public key" in errors["public"]["message"]
    assert f"key file {tmp_path} is a directory" in errors["directory"]["message"]


def test_servers_that_end_key_auth_say_why(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    """sshd hanging up after MaxAuthTries refused keys, and sshd taking no public keys at all,
    are auth errors that say so (not a lost connection, not "check your key")."""
    strangers = [keygen(tmp_path / f"stranger{i}", "ed25519") for i in range(4)]
    strict = ssh_lab.start_sshd(["127.0.0.33"], extra_config=("MaxAuthTries 2",))
    no_keys = ssh_lab.start_sshd(["127.0.0.34"], extra_config=("PubkeyAuthentication no",))
    agent = start_ssh_agent(tmp_path / "agent.sock", strangers[1:])
    try:
        state = tmp_path / "state"
        state.mkdir()
        write_known_hosts(state / "known_hosts", [strict, no_keys])
        hosts = [
            {**ssh_lab.host_vars(sshd), "name": name, "key_file": str(strangers[0]),
             "python": NODE_PYTHON}
            for name, sshd in (("strict", strict), ("no-keys", no_keys))
        ]  # fmt: skip
        result = run_dcctl(
            ["-i", str(write_inventory(tmp_path / "inv.yaml", hosts)), "--state-dir", str(state),
             "--connect-timeout", "5", "--json", "check"],
            home=tmp_path / "home",
            env={"SSH_AUTH_SOCK": str(tmp_path / "agent.sock")},
        )  # fmt: skip
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        strict.stop()
        no_keys.stop()
    errors = {host["name"]: host["error"] for host in result.json()["hosts"]}
    assert errors["strict"]["kind"] == "auth", errors["strict"]
    assert "MaxAuthTries" in errors["strict"]["message"]
    assert errors["no-keys"]["kind"] == "auth", errors["no-keys"]
    assert "does not accept public key authentication" in errors["no-keys"]["message"]


def check_one(tmp_path: Path, sshd: Sshd, host: dict[str, Any], **env: str) -> dict[str, Any]:
    """`dcctl check` of one host of `sshd` (its key trusted): the host's error, or None."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    write_known_hosts(state / "known_hosts", [sshd])
    result = run_dcctl(
        ["-i", str(write_inventory(tmp_path / "inv.yaml", [host])), "--state-dir", str(state),
         "--connect-timeout", "5", "--json", "check"],
        home=tmp_path / "home",
        env=env,
    )  # fmt: skip
    assert result.stdout, result.stderr
    error: dict[str, Any] = result.json()["hosts"][0]["error"]
    return error


def test_an_agent_that_refuses_to_sign_is_an_auth_error_naming_the_key(
    tmp_path: Path, ssh_lab: SshLab, key_lab: KeyLab
) -> None:
    """The agent lists the key but will not sign (`ssh-add -c` and the confirmation declined;
    a locked agent or an untouched FIDO key alike): an auth error that names the agent and
    the key, not a lost connection or sshd's MaxAuthTries."""
    agent = start_declining_agent(tmp_path / "agent.sock", [key_lab.plain])
    try:
        host = {**ssh_lab.host_vars(key_lab.sshd), "name": "confirm",
                "key_file": str(tmp_path / "no-such-key"), "python": NODE_PYTHON}  # fmt: skip
        error = check_one(tmp_path, key_lab.sshd, host, SSH_AUTH_SOCK=str(tmp_path / "agent.sock"))
    finally:
        agent.terminate()
        agent.wait(timeout=10)
    assert error["kind"] == "auth", error
    assert "ssh-agent refused to sign with plain (ecdsa-sha2-nistp256 SHA256:" in error["message"]


def test_a_server_wanting_a_second_factor_says_so(tmp_path: Path, ssh_lab: SshLab) -> None:
    """AuthenticationMethods publickey,password: the key is accepted, and then a password is
    wanted, which dcctl never sends. Said so, rather than "authentication failed"."""
    sshd = ssh_lab.start_sshd(
        ["127.0.0.37"],
        extra_config=("AuthenticationMethods publickey,password", "PasswordAuthentication yes"),
    )
    try:
        host = {**ssh_lab.host_vars(sshd), "name": "two-factor", "python": NODE_PYTHON}
        error = check_one(tmp_path, sshd, host)
    finally:
        sshd.stop()
    assert error["kind"] == "auth", error
    assert (
        "two-factor accepted the key but requires a second factor (password); "
        "dcctl supports public-key authentication only"
    ) in error["message"]


def test_a_key_both_in_a_file_and_in_the_agent_is_offered_once(
    tmp_path: Path, ssh_lab: SshLab
) -> None:
    """sshd allows two tries (MaxAuthTries 2). The inventory's key file is refused, and the
    agent holds that same key and then the right one: offered once, the wrong key leaves the
    second try to the right key."""
    stranger = keygen(tmp_path / "stranger", "ed25519")
    sshd = ssh_lab.start_sshd(["127.0.0.38"], extra_config=("MaxAuthTries 2",))
    agent = start_ssh_agent(tmp_path / "agent.sock", [stranger, ssh_lab.client_key])
    try:
        host = {**ssh_lab.host_vars(sshd), "name": "strict", "key_file": str(stranger),
                "python": NODE_PYTHON}  # fmt: skip
        error = check_one(tmp_path, sshd, host, SSH_AUTH_SOCK=str(tmp_path / "agent.sock"))
    finally:
        agent.terminate()
        agent.wait(timeout=10)
        sshd.stop()
    assert error is None
