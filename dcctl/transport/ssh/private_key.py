"""Private key files, read as OpenSSH reads them.

Not `paramiko.PKey.from_path`: it goes through `cryptography`'s loaders, which raise TypeError
for an encrypted key (aborting key loading before the agent's keys are tried), want the
passphrase as bytes, and report a wrong passphrase as "no BEGIN/END delimiters". Here the key
type is read from the file itself, paramiko's own class for that type decodes it, and each way
a file can be unusable becomes a KeyFileError whose message says how to fix it.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
from dataclasses import dataclass

import paramiko

PASSPHRASE_ENV = "DCCTL_SSH_KEY_PASSPHRASE"
CERT_SUFFIX = "-cert.pub"
MAX_KEY_FILE_BYTES = 1024 * 1024  # far above any real key; stops a key_file of /dev/zero
_OPENSSH_MAGIC = b"openssh-key-v1\x00"
_BEGIN = re.compile(r"^-----BEGIN ([A-Z0-9 ]*?) ?PRIVATE KEY-----\s*$", re.MULTILINE)
_END = re.compile(r"^-----END [A-Z0-9 ]*PRIVATE KEY-----\s*$", re.MULTILINE)
_PUBLIC = re.compile(r"\A\s*((ssh|ecdsa|sk)-\S+\s+[A-Za-z0-9+/]+=*|---- BEGIN SSH2 PUBLIC KEY)")

_OPENSSH_CLASSES: dict[str, type[paramiko.PKey]] = {
    "ssh-ed25519": paramiko.Ed25519Key,
    "ssh-rsa": paramiko.RSAKey,
    "ecdsa-sha2-nistp256": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp384": paramiko.ECDSAKey,
    "ecdsa-sha2-nistp521": paramiko.ECDSAKey,
}
_PEM_CLASSES: dict[str, type[paramiko.PKey]] = {"RSA": paramiko.RSAKey, "EC": paramiko.ECDSAKey}
_DEK_INFO = re.compile(r"^DEK-Info:\s*([A-Za-z0-9-]+)\s*,", re.MULTILINE)
# The ciphers paramiko decrypts key files with (paramiko 3.4 to 5.x): legacy PEM files
# (PKey._CIPHER_TABLE), OpenSSH-format RSA and ECDSA keys (PKey._read_private_key_openssh),
# and OpenSSH-format Ed25519 keys (Transport._cipher_info, less the AEAD ciphers).
_PEM_CIPHERS = frozenset({"AES-128-CBC", "AES-256-CBC", "DES-EDE3-CBC"})
_OPENSSH_CIPHERS = frozenset({"aes256-ctr", "aes256-cbc"})
_ED25519_CIPHERS = frozenset(
    f"aes{bits}-{mode}" for bits in (128, 192, 256) for mode in ("ctr", "cbc")
) | {"3des-cbc"}


class KeyFileError(Exception):
    """A key file that cannot be used; the message names it, says why and how to fix it."""


def passphrase_from_env() -> bytes | None:
    """The key passphrase from the environment (never from the inventory: it is a secret).

    As bytes: a passphrase that is not UTF-8 (typed in a Latin-1 terminal, say) would come out
    of os.environ as surrogates that no key decrypts with.
    """
    return os.environb.get(PASSPHRASE_ENV.encode()) or None


@dataclass(frozen=True)
class _KeyFormat:
    """What a key file's clear text says: paramiko's class for it, its file format and the
    cipher its private part is encrypted with (None when it is not encrypted)."""

    key_class: type[paramiko.PKey]
    openssh: bool
    cipher: str | None

    def decryptable(self) -> bool:
        """Whether paramiko has a decryptor for this file's cipher (explains a failure only:
        a key is never refused before paramiko has tried it)."""
        if self.cipher is None:
            return True
        if not self.openssh:
            return self.cipher in _PEM_CIPHERS
        if self.key_class is paramiko.Ed25519Key:
            return self.cipher in _ED25519_CIPHERS
        return self.cipher in _OPENSSH_CIPHERS


def load_private_key(path: str, passphrase: bytes | None) -> paramiko.PKey:
    """The key in `path` (with `path`-cert.pub attached when present), or KeyFileError."""
    key_path, cert_path = _key_and_cert(os.path.expanduser(path))
    text = _read_key_text(key_path)
    key = _decode(_key_format(text, key_path), text, key_path, passphrase)
    if os.path.isfile(cert_path):
        _attach_certificate(key, cert_path)
    return key


def _key_and_cert(path: str) -> tuple[str, str]:
    # paramiko (and OpenSSH's CertificateFile) accept the certificate's path for the key.
    if path.endswith(CERT_SUFFIX):
        return path[: -len(CERT_SUFFIX)], path
    return path, path + CERT_SUFFIX


def _read_key_text(path: str) -> str:
    """The file's text, refused as OpenSSH refuses it: missing, not a file, public, too open."""
    status, data = _read_regular_file(path)
    text = data.decode("utf-8", errors="replace")
    if _PUBLIC.match(text):
        raise KeyFileError(
            f"key file {path} is a public key; key_file must name the private key "
            "(the same path without .pub)"
        )
    # OpenSSH ignores a private key that others may read (sshkey_perm_ok), so a leaked
    # key is noticed; dcctl does the same, with the same words.
    if status.st_uid == os.getuid() and status.st_mode & 0o077:
        mode = stat.S_IMODE(status.st_mode)
        raise KeyFileError(
            f"UNPROTECTED PRIVATE KEY FILE: permissions 0{mode:03o} for '{path}' are too open "
            f"and the key is ignored, as OpenSSH does; run: chmod 600 {path}"
        )
    return text


def _read_regular_file(path: str) -> tuple[os.stat_result, bytes]:
    try:
        # O_NONBLOCK: a key_file naming a FIFO must not hang the run on open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise KeyFileError(f"key file {path} not found") from exc
    except OSError as exc:
        raise KeyFileError(f"key file {path} cannot be opened: {exc.strerror or exc}") from exc
    try:
        status = os.fstat(fd)
        if stat.S_ISDIR(status.st_mode):
            raise KeyFileError(f"key file {path} is a directory, not a private key")
        if not stat.S_ISREG(status.st_mode):
            raise KeyFileError(f"key file {path} is not a regular file")
        data = _read_at_most(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"key file {path} is far too large to be a private key")
    return status, data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _key_format(text: str, path: str) -> _KeyFormat:
    """The paramiko class for the key in `text` (from its PEM label or OpenSSH header), and
    its cipher."""
    begin = _BEGIN.search(text)
    if begin is None:
        raise KeyFileError(f"key file {path} holds no private key (no BEGIN ... PRIVATE KEY line)")
    label = begin.group(1)
    if label == "OPENSSH":
        key_type, cipher = _openssh_header(text, begin.end(), path)
        key_class = _OPENSSH_CLASSES.get(key_type)
        if key_class is None:
            raise KeyFileError(f"key file {path}: {key_type} keys are not supported by paramiko")
        return _KeyFormat(key_class, True, None if cipher == "none" else cipher)
    if label in _PEM_CLASSES:
        dek_info = _DEK_INFO.search(text, begin.end())
        return _KeyFormat(_PEM_CLASSES[label], False, dek_info.group(1) if dek_info else None)
    if label in ("", "ENCRYPTED"):
        raise KeyFileError(
            f"key file {path} is in PKCS#8 format, which paramiko cannot read; rewrite it in "
            f"OpenSSH format with: ssh-keygen -p -f {path}"
        )
    raise KeyFileError(f"key file {path}: {label} keys are not supported by paramiko")


def _openssh_header(text: str, body_start: int, path: str) -> tuple[str, str]:
    """Key type and cipher from the clear header of an OpenSSH key (PROTOCOL.key)."""
    end = _END.search(text, body_start)
    try:
        blob = base64.b64decode(
            "".join(text[body_start : end.start() if end else len(text)].split())
        )
    except (binascii.Error, ValueError) as exc:
        raise KeyFileError(f"key file {path} is corrupt (bad base64)") from exc
    if not blob.startswith(_OPENSSH_MAGIC):
        raise KeyFileError(f"key file {path} is corrupt (no openssh-key-v1 header)")
    header = paramiko.Message(blob[len(_OPENSSH_MAGIC) :])
    cipher = header.get_string().decode("ascii", errors="replace")
    for _kdf_and_options in range(2):
        header.get_string()
    if header.get_int() != 1:
        raise KeyFileError(f"key file {path} holds several keys; paramiko reads only one")
    key_type = paramiko.Message(header.get_binary()).get_string()
    return key_type.decode("ascii", errors="replace"), cipher


def _decode(
    key_format: _KeyFormat, text: str, path: str, passphrase: bytes | None
) -> paramiko.PKey:
    try:
        return key_format.key_class.from_private_key(io.StringIO(text))
    except paramiko.PasswordRequiredException:
        pass  # encrypted: decrypted below, if there is a passphrase
    except Exception as exc:
        # paramiko's parsers raise SSHException, ValueError, TypeError or IndexError on a
        # malformed file, by key type and format; any of them means only that this file is
        # unusable, which must not stop the other keys (and the agent's) from being tried.
        raise _unreadable(key_format, path, exc) from exc
    if not key_format.decryptable():
        raise _unsupported_cipher(key_format, path)  # a passphrase would not help
    if passphrase is None:
        raise KeyFileError(
            f"key file {path} is encrypted: load it into ssh-agent (ssh-add {path}) "
            f"or set {PASSPHRASE_ENV} to its passphrase"
        )
    try:
        # paramiko turns a str passphrase into bytes itself (util.b) and takes bytes as they
        # are, though its annotations say str.
        return key_format.key_class.from_private_key(
            io.StringIO(text),
            password=passphrase,  # type: ignore[arg-type]
        )
    except Exception as exc:
        # Decryption was the only step left: whatever paramiko raises (SSHException for a
        # checksum mismatch, ValueError from bcrypt) means the passphrase does not open it,
        # unless paramiko has no decryptor for the file's cipher at all.
        if not key_format.decryptable():
            raise _unsupported_cipher(key_format, path) from exc
        raise KeyFileError(
            f"key file {path}: the passphrase in {PASSPHRASE_ENV} is wrong for this key"
        ) from exc


def _unreadable(key_format: _KeyFormat, path: str, exc: Exception) -> KeyFileError:
    if not key_format.decryptable():
        return _unsupported_cipher(key_format, path)
    return KeyFileError(f"key file {path} is corrupt or unsupported: {exc!r}")


def _unsupported_cipher(key_format: _KeyFormat, path: str) -> KeyFileError:
    return KeyFileError(
        f"key file {path} is encrypted with {key_format.cipher}, which paramiko cannot "
        f"decrypt; load it into ssh-agent (ssh-add {path}) or re-encrypt it with a cipher "
        f"paramiko reads: ssh-keygen -p -Z aes256-ctr -f {path}"
    )


def _attach_certificate(key: paramiko.PKey, cert_path: str) -> None:
    try:
        key.load_certificate(cert_path)
    except (paramiko.SSHException, ValueError, OSError):
        # A certificate that does not fit the key is unusable, but the key alone may still
        # be accepted by plain public key auth, as OpenSSH would then offer it.
        return
