"""known_hosts files as OpenSSH writes and reads them: markers, patterns, hashed names.

Entries keep the key as its raw public blob: comparing blobs needs no key parsing, so a line
whose key type paramiko does not support still makes its host a known host (skipping it would
turn a recorded host into an "unknown" one that --accept-new-host-keys then trusts).
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import hmac
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

HASHED_PREFIX = "|1|"
_SHA1_BLOCK = 64
_IPAD = bytes(byte ^ 0x36 for byte in range(256))  # HMAC's pads, as bytes.translate tables
_OPAD = bytes(byte ^ 0x5C for byte in range(256))


class Marker(Enum):
    """What a line says about its key (OpenSSH's sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT")."""

    HOST_KEY = ""
    REVOKED = "@revoked"
    CERT_AUTHORITY = "@cert-authority"


@dataclass(frozen=True)
class KnownKey:
    """One key of one known_hosts line, and where it was read (for error messages)."""

    marker: Marker
    key_type: str
    blob: bytes
    source: str

    @property
    def line(self) -> str:
        return f"{self.key_type} {base64.b64encode(self.blob).decode()}"


class _Literal:
    """A plain host name (lower-cased), compared as is."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name.lower()

    def matches(self, name: str, name_bytes: bytes) -> bool:
        return self.name == name


class _Wildcard:
    """A `*`/`?` pattern, compiled once when the file is read."""

    __slots__ = ("regex",)

    def __init__(self, pattern: str) -> None:
        # Only `*` and `?` are special in known_hosts: `[` and `]` are literal (`[host]:port`).
        escaped = re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", ".")
        self.regex = re.compile(escaped, re.DOTALL)

    def matches(self, name: str, name_bytes: bytes) -> bool:
        return self.regex.fullmatch(name) is not None


class _Hashed:
    """`|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as HashKnownHosts writes it.

    A file of thousands of hashed lines is tested against every host of a run, so all that
    depends on the line alone is done once, when the file is read: salt and digest decoded,
    and the HMAC's keyed inner and outer SHA-1 states computed (RFC 2104; what the hmac module
    redoes on every call). Testing a name then costs two state copies and two short updates,
    half the time of hmac.digest().
    """

    __slots__ = ("_inner", "_outer", "digest")

    def __init__(self, salt: bytes, digest: bytes) -> None:
        key = hashlib.sha1(salt).digest() if len(salt) > _SHA1_BLOCK else salt
        key = key.ljust(_SHA1_BLOCK, b"\0")
        self._inner = hashlib.sha1(key.translate(_IPAD))
        self._outer = hashlib.sha1(key.translate(_OPAD))
        self.digest = digest

    def mac(self, name_bytes: bytes) -> bytes:
        """HMAC-SHA1(salt, name)."""
        inner = self._inner.copy()
        inner.update(name_bytes)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def matches(self, name: str, name_bytes: bytes) -> bool:
        return hmac.compare_digest(self.mac(name_bytes), self.digest)


class _Malformed:
    """A hashed pattern that does not decode: OpenSSH never matches it."""

    __slots__ = ()

    def matches(self, name: str, name_bytes: bytes) -> bool:
        return False


_Test = _Literal | _Wildcard | _Hashed | _Malformed


@dataclass(frozen=True)
class HostPattern:
    """One comma-separated item of a line's host field, parsed once."""

    negated: bool
    test: _Test

    @property
    def literal(self) -> str | None:
        return self.test.name if isinstance(self.test, _Literal) and not self.negated else None


def parse_pattern(text: str) -> HostPattern:
    negated = text.startswith("!")
    body = text[1:] if negated else text
    if body.startswith(HASHED_PREFIX):
        return HostPattern(negated, _parse_hashed(body))
    if "*" in body or "?" in body:
        return HostPattern(negated, _Wildcard(body))
    return HostPattern(negated, _Literal(body))


def _parse_hashed(hashed: str) -> _Hashed | _Malformed:
    parts = hashed[len(HASHED_PREFIX) :].split("|")
    if len(parts) != 2:
        return _Malformed()
    try:
        salt, digest = (base64.b64decode(part, validate=True) for part in parts)
    except (binascii.Error, ValueError):
        return _Malformed()
    return _Hashed(salt, digest)


@dataclass(frozen=True)
class Entry:
    """A parsed line: the host patterns it applies to and its key."""

    patterns: tuple[HostPattern, ...]
    key: KnownKey

    @property
    def plain_names(self) -> tuple[str, ...] | None:
        """The names, when every one is a literal name (indexable); None for patterns."""
        names = tuple(pattern.literal for pattern in self.patterns)
        if any(name is None for name in names):
            return None
        return tuple(name for name in names if name is not None)

    def matches(self, name: str) -> bool:
        lowered = name.lower()
        return host_matches(self.patterns, lowered, lowered.encode())


def parse_line(line: str, source: str) -> Entry | None:
    """One known_hosts line, or None for comments, blanks and lines OpenSSH would skip too."""
    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return None
    marker = Marker.HOST_KEY
    if fields[0].startswith("@"):
        try:
            marker = Marker(fields[0])
        except ValueError:
            return None  # an unknown marker: OpenSSH ignores the line
        fields = fields[1:]
    if len(fields) < 3:
        return None
    try:
        blob = base64.b64decode(fields[2], validate=True)
    except (binascii.Error, ValueError):
        return None
    patterns = tuple(parse_pattern(text) for text in fields[0].split(","))
    return Entry(patterns, KnownKey(marker, fields[1], blob, source))


def read_entries(path: Path) -> Iterator[Entry]:
    return parse_text(path.read_text(errors="replace"), path)


def parse_text(text: str, path: Path) -> Iterator[Entry]:
    for number, line in enumerate(text.splitlines(), start=1):
        entry = parse_line(line, f"{path}:{number}")
        if entry is not None:
            yield entry


def host_matches(patterns: tuple[HostPattern, ...], name: str, name_bytes: bytes) -> bool:
    """OpenSSH's match_hostname: any positive pattern matches and no negated one does.

    `name` is lower-cased by the caller, once per lookup rather than once per line.
    """
    matched = False
    for pattern in patterns:
        if pattern.test.matches(name, name_bytes):
            if pattern.negated:
                return False
            matched = True
    return matched


def append_once(path: Path, name: str, key: KnownKey) -> list[KnownKey]:
    """Record `name key` in `path` unless it is there already.

    Returns the other keys found recorded for `name` instead (another process accepted a
    different key meanwhile): then nothing is written, and the caller refuses the key.

    Concurrent runs with --accept-new-host-keys all see the host as unknown and all append:
    the file is locked, re-read under the lock, and written only if the key is absent.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        handle.seek(0)
        text = handle.read()
        recorded = [
            entry.key
            for entry in parse_text(text, path)
            if entry.key.marker is Marker.HOST_KEY and entry.matches(name)
        ]
        if any(other.blob == key.blob for other in recorded):
            return []
        if recorded:
            return recorded
        # A hand-edited file may lack its last newline; do not glue our line onto it.
        separator = "" if not text or text.endswith("\n") else "\n"
        handle.write(f"{separator}{name} {key.line}\n")
    return []
