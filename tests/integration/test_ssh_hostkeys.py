"""Host keys against real sshd: a known host offering a key of another type, @revoked and
@cert-authority lines, and concurrent runs recording new keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run_dcctl, start_dcctl
from sshlab import (
    Sshd,
    SshLab,
    keygen,
    known_hosts_lines,
    lab_host,
    new_typed_host_key,
    public_key_line,
    write_inventory,
)

# One sshd per host key type, each the only key of its host.
TYPED_ADDRESSES = {"ecdsa": "127.0.0.31", "rsa": "127.0.0.32"}


@pytest.fixture(scope="module")
def typed_sshds(ssh_lab: SshLab) -> Iterator[dict[str, Sshd]]:
    sshds = {
        key_type: ssh_lab.start_sshd([address], host_key=new_typed_host_key(ssh_lab, key_type))
        for key_type, address in TYPED_ADDRESSES.items()
    }
    try:
        yield sshds
    finally:
        for sshd in sshds.values():
            sshd.stop()


def check(tmp_path: Path, state: Path, hosts: list[dict[str, Any]], *args: str) -> Any:
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    result = run_dcctl(
        ["-i", str(inventory), "--state-dir", str(state), "--connect-timeout", "5", "--json",
         *args, "check"],
        home=tmp_path / "home",
    )  # fmt: skip
    assert result.stdout, result.stderr
    return {host["name"]: host["error"] for host in result.json()["hosts"]}


def user_known_hosts(tmp_path: Path, lines: list[str]) -> None:
    """~/.ssh/known_hosts of the user running dcctl (HOME is tmp_path/home)."""
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "known_hosts").write_text("".join(line + "\n" for line in lines))


def test_a_known_host_offering_only_another_key_type_is_changed_and_never_recorded(
    tmp_path: Path, ssh_lab: SshLab, healthy_sshd: Sshd, typed_sshds: dict[str, Sshd]
) -> None:
    """ed25519 on record; the host now has only an ECDSA (or RSA) key. OpenSSH refuses this
    as a changed key; it is not an unknown host that --accept-new-host-keys may trust."""
    state = tmp_path / "state"
    state.mkdir()
    recorded = "".join(
        f"[{address}]:{typed_sshds[kind].port} {healthy_sshd.host_key_pub}\n"
        for kind, address in TYPED_ADDRESSES.items()
    )
    (state / "known_hosts").write_text(recorded)
    hosts = [
        lab_host(ssh_lab, typed_sshds[kind], kind, address)
        for kind, address in TYPED_ADDRESSES.items()
    ]
    for args in ((), ("--accept-new-host-keys",)):
        errors = check(tmp_path, state, hosts, *args)
        for kind in TYPED_ADDRESSES:
            assert errors[kind]["kind"] == "host_key", errors[kind]
            assert "CHANGED" in errors[kind]["message"]
            assert "ssh-ed25519 at" in errors[kind]["message"]
        assert (state / "known_hosts").read_text() == recorded


def test_a_revoked_key_is_refused_even_when_listed_or_accepting_new(
    tmp_path: Path, healthy_sshd: Sshd, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> None:
    user_known_hosts(tmp_path, [f"@revoked * {healthy_sshd.host_key_pub}"])
    errors = check(tmp_path, state_dir, healthy_hosts[:1])  # its key is in state/known_hosts
    assert errors["node1"]["kind"] == "host_key"
    assert "is REVOKED by a @revoked line" in errors["node1"]["message"]

    fresh = tmp_path / "fresh-state"
    errors = check(tmp_path, fresh, healthy_hosts[:1], "--accept-new-host-keys")
    assert errors["node1"]["kind"] == "host_key"
    assert "REVOKED" in errors["node1"]["message"]
    assert not (fresh / "known_hosts").exists()


def test_a_host_known_only_through_a_cert_authority_gets_a_clear_refusal(
    tmp_path: Path, healthy_sshd: Sshd, healthy_hosts: list[dict[str, Any]]
) -> None:
    authority = keygen(tmp_path / "host_ca", "ed25519")
    user_known_hosts(tmp_path, [f"@cert-authority [127.0.0.*]:* {public_key_line(authority)}"])
    state = tmp_path / "state"
    errors = check(tmp_path, state, healthy_hosts[:1], "--accept-new-host-keys")
    message = errors["node1"]["message"]
    assert errors["node1"]["kind"] == "host_key"
    assert "certificate-based host keys are not supported" in message
    assert f"ssh-keyscan -t ssh-ed25519 -p {healthy_sshd.port} 127.0.0.2" in message
    assert not (state / "known_hosts").exists()


def test_concurrent_runs_accepting_new_keys_record_each_key_once(
    tmp_path: Path, healthy_sshd: Sshd, healthy_hosts: list[dict[str, Any]]
) -> None:
    state = tmp_path / "state"
    inventory = write_inventory(tmp_path / "inv.yaml", healthy_hosts)
    args = ["-i", str(inventory), "--state-dir", str(state), "--accept-new-host-keys", "check"]
    runs = [start_dcctl(args, tmp_path / "home") for _ in range(3)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    recorded = (state / "known_hosts").read_text().splitlines()
    assert sorted(recorded) == sorted(known_hosts_lines(healthy_sshd))


def ssh_config(tmp_path: Path, text: str) -> None:
    """~/.ssh/config of the user running dcctl (HOME is tmp_path/home)."""
    ssh_dir = tmp_path / "home" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "config").write_text(text)


def test_keys_from_files_and_aliases_named_in_ssh_config_make_hosts_known(
    tmp_path: Path, healthy_sshd: Sshd, healthy_hosts: list[dict[str, Any]]
) -> None:
    """GlobalKnownHostsFile (standing in for /etc/ssh/ssh_known_hosts, where clusters hand out
    host keys), UserKnownHostsFile and HostKeyAlias from ~/.ssh/config: each host is known
    through them, with nothing in dcctl's own file."""
    global_file = tmp_path / "ssh_known_hosts"
    global_file.write_text(f"rack1-node1 {healthy_sshd.host_key_pub}\n")
    user_file = tmp_path / "rack1_known_hosts"
    user_file.write_text(f"[127.0.0.3]:{healthy_sshd.port} {healthy_sshd.host_key_pub}\n")
    ssh_config(
        tmp_path,
        f"Host 127.0.0.2\n  HostKeyAlias rack1-node1\n  GlobalKnownHostsFile {global_file}\n"
        f"Host 127.0.0.3\n  UserKnownHostsFile {user_file}\n",
    )
    state = tmp_path / "state"
    errors = check(tmp_path, state, healthy_hosts[:2])
    assert errors == {"node1": None, "node2": None}
    assert not (state / "known_hosts").exists()


def test_a_host_in_the_global_file_offering_another_key_is_changed_even_accepting_new(
    tmp_path: Path, healthy_sshd: Sshd, healthy_hosts: list[dict[str, Any]]
) -> None:
    """A host recorded only in the global known_hosts file, answering with another key (a
    MITM): refused as CHANGED, not trusted on first use and recorded."""
    recorded = keygen(tmp_path / "real_host_key", "ed25519")
    global_file = tmp_path / "ssh_known_hosts"
    global_file.write_text(f"[127.0.0.2]:{healthy_sshd.port} {public_key_line(recorded)}\n")
    ssh_config(tmp_path, f"Host 127.0.0.2\n  GlobalKnownHostsFile {global_file}\n")
    state = tmp_path / "state"
    errors = check(tmp_path, state, healthy_hosts[:1], "--accept-new-host-keys")
    assert errors["node1"]["kind"] == "host_key", errors["node1"]
    assert "CHANGED" in errors["node1"]["message"]
    assert f"{global_file}:1" in errors["node1"]["message"]
    assert not (state / "known_hosts").exists()
