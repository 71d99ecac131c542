"""Host key policy: known keys pass, changed keys are refused, unknown keys only on request."""

from __future__ import annotations

import base64
import hmac
import multiprocessing
import multiprocessing.synchronize
from pathlib import Path

import paramiko
import pytest

from dcctl.transport.base import HostError
from dcctl.transport.ssh import HostKeyStore, SshOptions
from dcctl.transport.ssh import known_hosts as known_hosts_module
from dcctl.transport.ssh.options import DEFAULT_GLOBAL_KNOWN_HOSTS, KnownHostsFiles


@pytest.fixture(scope="module")
def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    return paramiko.ECDSAKey.generate(), paramiko.ECDSAKey.generate()


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def store(
    tmp_path: Path,
    user_lines: list[str],
    accept_new: bool = False,
    global_lines: list[str] | None = None,
) -> HostKeyStore:
    """A store reading one user file and one global file (no global file by default): never
    this machine's own ~/.ssh or /etc/ssh."""
    user_file = write_lines(tmp_path / "user_known_hosts", user_lines)
    global_files = ()
    if global_lines is not None:
        global_files = (write_lines(tmp_path / "ssh_known_hosts", global_lines),)
    return HostKeyStore(
        SshOptions(
            trusted_keys_file=tmp_path / "state" / "known_hosts",
            user_known_hosts=(user_file,),
            global_known_hosts=global_files,
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


@pytest.fixture(scope="module")
def rsa_key() -> paramiko.PKey:
    return paramiko.RSAKey.generate(1024)


def test_a_key_of_another_type_than_recorded_is_changed_not_unknown(
    tmp_path: Path, keys: tuple, rsa_key: paramiko.PKey
) -> None:
    """An RSA key on record, an ECDSA key offered: the host is known, so this is a changed
    key (refused even when accepting new keys), and nothing is recorded."""
    impostor = keys[0]
    hosts = store(tmp_path, [line("[gpu1]:2222", rsa_key)], accept_new=True)
    with pytest.raises(HostError) as error:
        hosts.verify("[gpu1]:2222", impostor)
    assert error.value.kind == "host_key"
    assert "CHANGED" in error.value.message
    assert "ssh-rsa at" in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()
    assert hosts.known_types("[gpu1]:2222") == ["ssh-rsa"]


def test_a_line_of_a_key_type_paramiko_lacks_still_makes_the_host_known(
    tmp_path: Path, keys: tuple
) -> None:
    blob = base64.b64encode(b"\0\0\0\x07ssh-dss" + bytes(40)).decode()
    hosts = store(tmp_path, [f"gpu1 ssh-dss {blob}"], accept_new=True)
    with pytest.raises(HostError) as error:
        hosts.verify("gpu1", keys[0])
    assert "CHANGED" in error.value.message


def test_revoked_key_is_refused_even_when_listed_and_accepting_new(
    tmp_path: Path, keys: tuple
) -> None:
    known, other = keys
    hosts = store(tmp_path, [f"@revoked * {line('', known).strip()}", line("gpu1", known)], True)
    for name in ("gpu1", "gpu2"):
        with pytest.raises(HostError) as error:
            hosts.verify(name, known)
        assert error.value.kind == "host_key"
        assert "REVOKED" in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()
    hosts.verify("gpu2", other)  # only that key is revoked


def test_a_host_known_only_through_a_cert_authority_is_refused_clearly(
    tmp_path: Path, keys: tuple
) -> None:
    authority, host_key = keys
    ca_line = f"@cert-authority *.rack1,[*.rack1]:* {line('', authority).strip()}"
    hosts = store(tmp_path, [ca_line], accept_new=True)
    for name, scan in (("gpu1.rack1", " gpu1.rack1"), ("[gpu2.rack1]:2222", " -p 2222 gpu2.rack1")):
        with pytest.raises(HostError) as error:
            hosts.verify(name, host_key)
        assert error.value.kind == "host_key"
        assert "certificate-based host keys are not supported" in error.value.message
        assert f"ssh-keyscan -t {host_key.get_name()}{scan}" in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()
    hosts.verify("gpu1.rack2", host_key)  # outside the authority's patterns: merely new


def test_wildcards_negation_and_case_match_as_in_openssh(tmp_path: Path, keys: tuple) -> None:
    known, impostor = keys
    hosts = store(tmp_path, [line("*.rack1,!gpu9.rack1,[10.0.0.?]:2222", known)])
    hosts.verify("GPU1.rack1", known)
    hosts.verify("[10.0.0.7]:2222", known)
    with pytest.raises(HostError) as error:
        hosts.verify("gpu1.rack1", impostor)
    assert "CHANGED" in error.value.message
    for stranger in ("gpu9.rack1", "[10.0.0.17]:2222", "10.0.0.7"):
        with pytest.raises(HostError) as error:
            hosts.verify(stranger, known)
        assert "unknown host key" in error.value.message


def test_a_key_recorded_meanwhile_by_another_run_is_not_overruled(
    tmp_path: Path, keys: tuple
) -> None:
    """Two runs accepting a new host at once, and the host answered them with different
    keys: the second run finds the first one's key under the lock and refuses its own."""
    first, second = keys
    hosts = store(tmp_path, [], accept_new=True)
    trusted = tmp_path / "state" / "known_hosts"
    trusted.parent.mkdir()
    trusted.write_text(line("gpu9", first))  # another run, after this one loaded the file
    with pytest.raises(HostError) as error:
        hosts.verify("gpu9", second)
    assert "CHANGED" in error.value.message
    assert trusted.read_text() == line("gpu9", first)
    hosts.verify("gpu7", second)
    # The other run's last line had no newline; ours does not join it.
    assert trusted.read_text().splitlines() == [line("gpu9", first), line("gpu7", second)]


def _accept_all(
    tmp_path: Path, names: list[str], key: paramiko.PKey, start: multiprocessing.synchronize.Barrier
) -> None:
    options = SshOptions(
        trusted_keys_file=tmp_path / "state" / "known_hosts",
        user_known_hosts=(tmp_path / "absent",),
        global_known_hosts=(),
        accept_new_host_keys=True,
    )
    hosts = HostKeyStore(options)
    start.wait(30)
    for name in names:
        hosts.verify(name, key)


def test_concurrent_runs_record_each_new_key_once(tmp_path: Path, keys: tuple) -> None:
    """Runs that all loaded the file before any of them appended still write each line once."""
    names = [f"gpu{i}" for i in range(5)]
    forked = multiprocessing.get_context("fork")
    start = forked.Barrier(4)
    runs = [
        forked.Process(target=_accept_all, args=(tmp_path, names, keys[0], start)) for _ in range(4)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(60)
    assert [run.exitcode for run in runs] == [0] * 4
    recorded = (tmp_path / "state" / "known_hosts").read_text().splitlines()
    assert sorted(recorded) == sorted(line(name, keys[0]) for name in names)


def test_a_key_in_the_global_known_hosts_file_makes_the_host_known(
    tmp_path: Path, keys: tuple
) -> None:
    """Clusters often hand out host keys only through /etc/ssh/ssh_known_hosts. A host listed
    there is known: another key is CHANGED, also with --accept-new-host-keys (it would
    otherwise be trusted on first use, and recorded: a MITM's key accepted)."""
    known, impostor = keys
    hosts = store(tmp_path, [], accept_new=True, global_lines=[line("[gpu1]:2222", known)])
    hosts.verify("[gpu1]:2222", known)
    with pytest.raises(HostError) as error:
        hosts.verify("[gpu1]:2222", impostor)
    assert error.value.kind == "host_key"
    assert "CHANGED" in error.value.message
    assert str(tmp_path / "ssh_known_hosts") in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()


def test_the_global_files_default_to_openssh_s() -> None:
    options = SshOptions(trusted_keys_file=Path("/nonexistent"))
    assert options.global_known_hosts == DEFAULT_GLOBAL_KNOWN_HOSTS
    assert [str(path) for path in DEFAULT_GLOBAL_KNOWN_HOSTS] == [
        "/etc/ssh/ssh_known_hosts",
        "/etc/ssh/ssh_known_hosts2",
    ]
    assert [path.name for path in options.user_known_hosts] == ["known_hosts", "known_hosts2"]


def test_files_named_for_a_host_replace_the_run_s_own(tmp_path: Path, keys: tuple) -> None:
    """UserKnownHostsFile / GlobalKnownHostsFile in ~/.ssh/config: the named files replace
    the defaults for that host only; dcctl's own file is always read."""
    known, impostor = keys
    hosts = store(tmp_path, [line("gpu1", impostor)], global_lines=[line("gpu1", impostor)])
    rack_file = write_lines(tmp_path / "rack_known_hosts", [line("gpu1", known)])
    rack_only = KnownHostsFiles(user=(rack_file,), system=())
    hosts.verify("gpu1", known, rack_only)
    with pytest.raises(HostError, match="CHANGED"):
        hosts.verify("gpu1", known)  # the run's own files hold another key for it
    with pytest.raises(HostError, match="unknown host key"):
        hosts.verify("gpu1", known, KnownHostsFiles(user=(), system=()))
    trusted = tmp_path / "state" / "known_hosts"
    trusted.parent.mkdir()
    write_lines(trusted, [line("gpu2", known)])
    fresh = store(tmp_path, [])
    fresh.verify("gpu2", known, KnownHostsFiles(user=(), system=()))


def test_an_unreadable_known_hosts_file_is_refused_not_skipped(tmp_path: Path, keys: tuple) -> None:
    """Skipping it could make a known host unknown, and --accept-new-host-keys trust it."""
    hosts = store(tmp_path, [], accept_new=True)
    unreadable = KnownHostsFiles(user=(tmp_path,), system=())  # a directory: EISDIR
    with pytest.raises(HostError) as error:
        hosts.verify("gpu1", keys[0], unreadable)
    assert error.value.kind == "host_key"
    assert f"known_hosts file {tmp_path} cannot be read" in error.value.message
    assert not (tmp_path / "state" / "known_hosts").exists()


def test_each_hashed_line_is_tested_once_per_host_name(
    tmp_path: Path, keys: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handshake asks for the host's key types, then verifies its key: the hashed lines
    (HashKnownHosts) are scanned for that name once, not once per question."""
    known, _ = keys
    hashed = [line(paramiko.HostKeys.hash_host(f"10.0.{i // 250}.{i % 250}"), known)
              for i in range(200)]  # fmt: skip
    hosts = store(tmp_path, hashed)
    macs: list[bytes] = []
    real_mac = known_hosts_module._Hashed.mac

    def counting_mac(self: known_hosts_module._Hashed, name_bytes: bytes) -> bytes:
        macs.append(name_bytes)
        return real_mac(self, name_bytes)

    monkeypatch.setattr(known_hosts_module._Hashed, "mac", counting_mac)
    assert hosts.known_types("10.0.0.7") == [known.get_name()]
    hosts.verify("10.0.0.7", known)
    assert len(macs) == 200
    hosts.verify("10.0.0.8", known)
    assert len(macs) == 400


def test_hashed_names_match_as_hmac_sha1_of_the_salt() -> None:
    """The precomputed HMAC states give what the hmac module and paramiko compute."""
    for salt in (b"", b"s" * 20, b"long" * 40):
        entry = known_hosts_module.parse_pattern(
            "|1|" + base64.b64encode(salt).decode() + "|" + base64.b64encode(b"x").decode()
        )
        assert isinstance(entry.test, known_hosts_module._Hashed)
        assert entry.test.mac(b"gpu1") == hmac.digest(salt, b"gpu1", "sha1")
    hashed = paramiko.HostKeys.hash_host("[gpu1]:2222")
    assert known_hosts_module.parse_pattern(hashed).test.matches("[gpu1]:2222", b"[gpu1]:2222")


def test_a_new_key_that_cannot_be_recorded_is_refused(tmp_path: Path, keys: tuple) -> None:
    """A state dir through a regular file: permission bits would not stop root here."""
    offered, _ = keys
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    hosts = HostKeyStore(
        SshOptions(
            trusted_keys_file=blocker / "known_hosts",
            user_known_hosts=(),
            global_known_hosts=(),
            accept_new_host_keys=True,
        )
    )
    with pytest.raises(HostError) as refused:
        hosts.verify("gpu1", offered)
    assert refused.value.kind == "host_key"
    assert f"cannot record it in {blocker / 'known_hosts'}" in refused.value.message
    with pytest.raises(HostError):  # not trusted for the rest of the run either
        hosts.verify("gpu1", offered)
