"""Host identifiers with a port, as Ansible reads them: `gpu01:2222`, `[fe80::1]:2222`,
`10.0.0.1:22`, `gpu[01:08]:2222`, and bare IPv6 addresses (`fe80::1`), which have no port.

Ansible's YAML inventory plugin splits a host key this way (its parse_address with ranges
allowed), and so does its pattern splitter, to tell `host:port` from `a:b` (two patterns).
"""

from __future__ import annotations

import ipaddress
import re

_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z", re.IGNORECASE | re.UNICODE)
_BRACKETED_HOSTPORT = re.compile(r"\[(.+)\]:([0-9]+)\Z")
_HOSTPORT = re.compile(r"((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)\Z")
# An IPv6 address with ranges in place of some of its parts: `2001:db8::[1:4]`.
_IPV6_LIKE = re.compile(r"(?:[0-9a-f]{0,4}|\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\])(?::|\Z)", re.I)


def parse_address(text: str) -> tuple[str, int | None] | None:
    """(host, port) for a host identifier with an optional port, port None when none is
    given; None when `text` is not a host identifier at all (Ansible then takes the text
    whole as a name)."""
    port: int | None = None
    match = _BRACKETED_HOSTPORT.match(text) or _HOSTPORT.match(text)
    if match:
        text, port = match.group(1), int(match.group(2))
    if _HOSTNAME.match(text) or _is_ipv6(text):
        return text, port
    return None


def split_host_key(text: str) -> tuple[str, int | None]:
    """A `hosts:` key as Ansible's YAML inventory reads it: the host name (or range) and the
    port it gives, if any. A port of 0 is no port, as in Ansible."""
    parsed = parse_address(text)
    if parsed is None:
        return text, None
    host, port = parsed
    return host, port or None


def _is_ipv6(text: str) -> bool:
    if ":" not in text:
        return False
    if "[" not in text:
        try:
            ipaddress.IPv6Address(text)
        except ValueError:
            return False
        return "%" not in text  # Ansible's pattern has no zone index
    # With ranges: each part a hex group or a range, at least one `::` or eight parts.
    pieces = re.findall(r"\[[^\]]*\]|[^:]+|:", text)
    rebuilt = "".join("1" if piece.startswith("[") else piece for piece in pieces)
    if not all(_IPV6_LIKE.match(piece + ":") for piece in pieces if piece != ":"):
        return False
    try:
        ipaddress.IPv6Address(rebuilt)
    except ValueError:
        return False
    return True
