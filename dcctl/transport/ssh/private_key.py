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


class KeyFileError(Exception):
    """A key file that cannot be used; the message names it, says why and how to fix it."""


def passphrase_from_env() -> str | None:
    """The key passphrase from the environment (never from the inventory: it is a secret)."""
    return os.environ.get(PASSPHRASE_ENV) or None


def load_private_key(path: str, passphrase: str | None) -> paramiko.PKey:
    """The key in `path` (with `path`-cert.pub attached when present), or KeyFileError."""
    key_path, cert_path = _key_and_cert(os.path.expanduser(path))
    text = _read_key_text(key_path)
    key = _decode(_key_class(text, key_path), text, key_path, passphrase)
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


def _key_class(text: str, path: str) -> type[paramiko.PKey]:
    """The paramiko class for the key in `text`, from its PEM label or OpenSSH header."""
    begin = _BEGIN.search(text)
    if begin is None:
        raise KeyFileError(f"key file {path} holds no private key (no BEGIN ... PRIVATE KEY line)")
    label = begin.group(1)
    if label == "OPENSSH":
        key_type = _openssh_key_type(text, begin.end(), path)
        key_class = _OPENSSH_CLASSES.get(key_type)
        if key_class is None:
            raise KeyFileError(f"key file {path}: {key_type} keys are not supported by paramiko")
        return key_class
    if label in _PEM_CLASSES:
        return _PEM_CLASSES[label]
    if label in ("", "ENCRYPTED"):
        raise KeyFileError(
            f"key file {path} is in PKCS#8 format, which paramiko cannot read; rewrite it in "
            f"OpenSSH format with: ssh-keygen -p -f {path}"
        )
    raise KeyFileError(f"key file {path}: {label} keys are not supported by paramiko")


def _openssh_key_type(text: str, body_start: int, path: str) -> str:
    """The key type in the clear header of an OpenSSH key, encrypted or not (PROTOCOL.key)."""
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
    for _cipher_kdf_and_options in range(3):
        header.get_string()
    if header.get_int() != 1:
        raise KeyFileError(f"key file {path} holds several keys; paramiko reads only one")
    return paramiko.Message(header.get_binary()).get_string().decode("ascii", errors="replace")


def _decode(
    key_class: type[paramiko.PKey], text: str, path: str, passphrase: str | None
) -> paramiko.PKey:
    try:
        return key_class.from_private_key(io.StringIO(text))
    except paramiko.PasswordRequiredException:
        pass  # encrypted: decrypted below, if there is a passphrase
    except Exception as exc:
        # paramiko's parsers raise SSHException, ValueError, TypeError or IndexError on a
        # malformed file, by key type and format; any of them means only that this file is
        # unusable, which must not stop the other keys (and the agent's) from being tried.
        raise KeyFileError(f"key file {path} is corrupt or unsupported: {exc!r}") from exc
    if passphrase is None:
        raise KeyFileError(
            f"key file {path} is encrypted: load it into ssh-agent (ssh-add {path}) "
            f"or set {PASSPHRASE_ENV} to its passphrase"
        )
    try:
        return key_class.from_private_key(io.StringIO(text), password=passphrase)
    except Exception as exc:
        # Decryption was the only step left: whatever paramiko raises (SSHException for a
        # checksum mismatch, ValueError from bcrypt) means the passphrase does not open it.
        raise KeyFileError(
            f"key file {path}: the passphrase in {PASSPHRASE_ENV} is wrong for this key"
        ) from exc


def _attach_certificate(key: paramiko.PKey, cert_path: str) -> None:
    try:
        key.load_certificate(cert_path)
    except (paramiko.SSHException, ValueError, OSError):
        # A certificate that does not fit the key is unusable, but the key alone may still
        # be accepted by plain public key auth, as OpenSSH would then offer it.
        return
