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


@dataclass(frozen=True)
class Entry:
    """A parsed line: the host patterns it applies to and its key."""

    patterns: tuple[str, ...]
    key: KnownKey

    @property
    def plain_names(self) -> tuple[str, ...] | None:
        """The names, when every one is a literal name (indexable); None for patterns."""
        if any(_is_pattern(p) for p in self.patterns):
            return None
        return tuple(p.lower() for p in self.patterns)

    def matches(self, name: str) -> bool:
        return host_matches(self.patterns, name)


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
    return Entry(tuple(fields[0].split(",")), KnownKey(marker, fields[1], blob, source))


def read_entries(path: Path) -> Iterator[Entry]:
    return parse_text(path.read_text(errors="replace"), path)


def parse_text(text: str, path: Path) -> Iterator[Entry]:
    for number, line in enumerate(text.splitlines(), start=1):
        entry = parse_line(line, f"{path}:{number}")
        if entry is not None:
            yield entry


def host_matches(patterns: tuple[str, ...], name: str) -> bool:
    """OpenSSH's match_hostname: any positive pattern matches and no negated one does."""
    name = name.lower()
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _pattern_matches(pattern[1:] if negated else pattern, name):
            if negated:
                return False
            matched = True
    return matched


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith(HASHED_PREFIX):
        return _hashed_matches(pattern, name)
    if not _is_pattern(pattern):
        return pattern.lower() == name
    return _wildcard_regex(pattern.lower()).fullmatch(name) is not None


def _is_pattern(pattern: str) -> bool:
    return pattern.startswith(("!", HASHED_PREFIX)) or "*" in pattern or "?" in pattern


def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    # Only `*` and `?` are special in known_hosts: `[` and `]` are literal (`[host]:port`).
    escaped = re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".")
    return re.compile(escaped, re.DOTALL)


def _hashed_matches(hashed: str, name: str) -> bool:
    """`|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, as HashKnownHosts writes it."""
    parts = hashed[len(HASHED_PREFIX) :].split("|")
    if len(parts) != 2:
        return False
    try:
        salt, digest = (base64.b64decode(part, validate=True) for part in parts)
    except (binascii.Error, ValueError):
        return False
    mine = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(mine, digest)


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
