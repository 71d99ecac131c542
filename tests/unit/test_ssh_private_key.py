"""Key files as OpenSSH reads them: every way a file can be unusable is a note naming the fix,
never an exception that stops the other keys (and the agent's) from being tried."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import paramiko
import pytest

from dcctl.transport.ssh import PASSPHRASE_ENV, KeyRing
from dcctl.transport.ssh.private_key import KeyFileError, load_private_key

PASSPHRASE = "correct horse 7"

# (name, ssh-keygen type, PEM format): every encrypted layout paramiko has a reader for.
ENCRYPTED = [
    ("ed25519", "ed25519", False),
    ("ecdsa", "ecdsa", False),
    ("rsa", "rsa", False),
    ("ecdsa-pem", "ecdsa", True),
    ("rsa-pem", "rsa", True),
]


def keygen(path: Path, key_type: str, passphrase: str = "", pem: bool = False) -> Path:
    argv = ["ssh-keygen", "-q", "-t", key_type, "-N", passphrase, "-f", str(path)]
    argv += ["-b", "2048"] if key_type == "rsa" else []
    argv += ["-m", "PEM"] if pem else []
    subprocess.run(argv, check=True)
    return path


def public_blob(path: Path) -> str:
    return Path(f"{path}.pub").read_text().split()[1]


@pytest.fixture(scope="module")
def encrypted_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("keys")
    return {name: keygen(root / name, kind, PASSPHRASE, pem) for name, kind, pem in ENCRYPTED}


@pytest.fixture(autouse=True)
def no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)


def note_for(path: Path | str) -> str:
    keys, notes = KeyRing().keys_for([str(path)])
    assert keys == []
    assert len(notes) == 1
    return notes[0]


@pytest.mark.parametrize("name", [name for name, _, _ in ENCRYPTED])
def test_encrypted_key_without_passphrase_says_how_to_fix_it(
    encrypted_keys: dict[str, Path], name: str
) -> None:
    path = encrypted_keys[name]
    note = note_for(path)
    assert f"{path} is encrypted" in note
    assert f"ssh-add {path}" in note
    assert PASSPHRASE_ENV in note


@pytest.mark.parametrize("name", [name for name, _, _ in ENCRYPTED])
def test_encrypted_key_opens_with_the_passphrase_from_the_environment(
    encrypted_keys: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    keys, notes = KeyRing().keys_for([str(encrypted_keys[name])])
    assert notes == []
    assert [key.get_base64() for key in keys] == [public_blob(encrypted_keys[name])]


@pytest.mark.parametrize("name", [name for name, _, _ in ENCRYPTED])
def test_a_wrong_passphrase_is_named_as_such(
    encrypted_keys: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    note = note_for(encrypted_keys[name])
    assert f"the passphrase in {PASSPHRASE_ENV} is wrong" in note


def test_unencrypted_key_ignores_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    path = keygen(tmp_path / "plain", "ed25519")
    assert load_private_key(str(path), PASSPHRASE.encode()).get_base64() == public_blob(path)


def test_one_bad_key_file_does_not_stop_the_others(
    encrypted_keys: dict[str, Path], tmp_path: Path
) -> None:
    good = keygen(tmp_path / "good", "ecdsa")
    keys, notes = KeyRing().keys_for([str(encrypted_keys["rsa"]), str(good)])
    assert [key.get_base64() for key in keys] == [public_blob(good)]
    assert "is encrypted" in notes[0]


def test_a_key_readable_by_others_is_refused_as_openssh_does(tmp_path: Path) -> None:
    path = keygen(tmp_path / "open", "ed25519")
    path.chmod(0o644)
    note = note_for(path)
    assert "UNPROTECTED PRIVATE KEY FILE" in note
    assert f"permissions 0644 for '{path}' are too open" in note
    assert f"chmod 600 {path}" in note
    path.chmod(0o640)
    assert "permissions 0640" in note_for(path)


def test_files_that_are_no_private_key_say_what_they_are(tmp_path: Path) -> None:
    key = keygen(tmp_path / "id", "ed25519")
    garbage = tmp_path / "garbage"
    garbage.write_text("hello\n")
    garbage.chmod(0o600)
    truncated = tmp_path / "truncated"
    truncated.write_text("\n".join([*key.read_text().splitlines()[:2], "%%%"]) + "\n")
    truncated.chmod(0o600)
    expected = {
        Path(f"{key}.pub"): "is a public key; key_file must name the private key",
        tmp_path: "is a directory",
        tmp_path / "absent": "not found",
        garbage: "holds no private key",
        truncated: "is corrupt",
    }
    for path, words in expected.items():
        assert words in note_for(path), path


def test_pkcs8_keys_come_with_the_conversion_command(tmp_path: Path) -> None:
    path = tmp_path / "pkcs8"
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    path.chmod(0o600)
    note = note_for(path)
    assert "PKCS#8" in note
    assert f"ssh-keygen -p -f {path}" in note


def test_a_certificate_next_to_the_key_is_attached(tmp_path: Path) -> None:
    authority = keygen(tmp_path / "ca", "ed25519")
    key = keygen(tmp_path / "id", "ecdsa")
    subprocess.run(
        ["ssh-keygen", "-q", "-s", str(authority), "-I", "test", "-n", "root", f"{key}.pub"],
        check=True, capture_output=True,
    )  # fmt: skip
    for path in (key, Path(f"{key}-cert.pub")):
        loaded = load_private_key(str(path), None)
        assert loaded.public_blob is not None
        assert loaded.public_blob.key_type.endswith("-cert-v01@openssh.com")


def test_load_private_key_raises_only_key_file_errors(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError):
        load_private_key(str(tmp_path / "absent"), None)
    assert isinstance(load_private_key(str(keygen(tmp_path / "k", "rsa")), None), paramiko.RSAKey)
    assert os.environ.get(PASSPHRASE_ENV) is None


def test_a_passphrase_that_is_not_utf8_opens_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Typed in a Latin-1 terminal: os.environ would turn it into surrogates, which decrypt
    nothing; the passphrase is taken as the bytes the environment holds."""
    latin1 = "café 7".encode("latin-1")
    path = tmp_path / "latin1"
    subprocess.run(
        [b"ssh-keygen", b"-q", b"-t", b"ed25519", b"-N", latin1, b"-f", str(path).encode()],
        check=True,
    )
    monkeypatch.setitem(os.environb, PASSPHRASE_ENV.encode(), latin1)
    keys, notes = KeyRing().keys_for([str(path)])
    assert notes == []
    assert [key.get_base64() for key in keys] == [public_blob(path)]


def unsupported_cipher_keys(root: Path) -> dict[str, Path]:
    """Keys encrypted with ciphers paramiko has no decryptor for (OpenSSH and openssl can)."""
    pem = root / "rsa-aes192.pem"
    subprocess.run(
        ["openssl", "genrsa", "-aes192", "-traditional", "-passout", f"pass:{PASSPHRASE}",
         "-out", str(pem), "2048"],
        check=True, capture_output=True,
    )  # fmt: skip
    pem.chmod(0o600)
    keys = {"AES-192-CBC": pem}
    for key_type, cipher in (("ed25519", "chacha20-poly1305@openssh.com"), ("ecdsa", "aes128-ctr")):
        path = root / f"{key_type}-{cipher}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", key_type, "-N", PASSPHRASE, "-Z", cipher, "-f", str(path)],
            check=True,
        )
        keys[cipher] = path
    return keys


def test_a_cipher_paramiko_cannot_decrypt_is_named_not_blamed_on_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cipher, path in unsupported_cipher_keys(tmp_path).items():
        for passphrase in (None, PASSPHRASE):
            if passphrase is None:
                monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
            else:
                monkeypatch.setenv(PASSPHRASE_ENV, passphrase)
            note = note_for(path)
            assert f"key file {path} is encrypted with {cipher}, which paramiko cannot" in note
            assert f"ssh-add {path}" in note
            assert f"ssh-keygen -p -Z aes256-ctr -f {path}" in note
            assert "wrong" not in note
