"""`--limit` host patterns, as in Ansible: `rack1,gpu0*,node[01:08],!gpu007,&healthy`.

Plain terms are unioned (no plain term means every host), then each `&term` intersects and
each `!term` removes, whatever order the terms were written in.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from dcctl.errors import InputError
from dcctl.inventory.model import Host, Inventory
from dcctl.inventory.ranges import HostRangeError, expand_host_range, has_host_range

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class _Term:
    operator: str  # "" (union), "&" (intersect) or "!" (exclude)
    pattern: str


def select_hosts(inventory: Inventory, limit: str | None) -> list[Host]:
    """The hosts `limit` selects, in inventory order; all of them when `limit` is empty."""
    terms = _parse_limit(limit or "")
    unions = [term for term in terms if term.operator == ""]
    selected: set[str] = set()
    if unions:
        for term in unions:
            selected |= _matching_names(inventory, term.pattern)
    else:
        selected = {host.name for host in inventory.hosts}
    for term in terms:
        if term.operator == "&":
            selected &= _matching_names(inventory, term.pattern)
        elif term.operator == "!":
            selected -= _matching_names(inventory, term.pattern)
    return [host for host in inventory.hosts if host.name in selected]


def _parse_limit(limit: str) -> list[_Term]:
    terms: list[_Term] = []
    for raw in limit.split(","):
        text = raw.strip()
        if not text:
            continue  # tolerate `a,,b` and a trailing comma
        operator = text[0] if text[0] in "!&" else ""
        pattern = text[len(operator) :].strip()
        if not pattern:
            raise InputError(f"--limit: '{text}' needs a host, group or pattern after it")
        terms.append(_Term(operator, pattern))
    return terms


def _matching_names(inventory: Inventory, pattern: str) -> set[str]:
    """Names of the hosts `pattern` stands for; a pattern that matches nothing is an error,
    because a typo in `!gpu01` would otherwise silently run on the host meant to be left out.
    """
    names: set[str] = set()
    for piece in _expand(pattern):
        names |= _match_piece(inventory, piece)
    if not names and not _names_a_group(inventory, pattern):
        raise InputError(f"--limit: '{pattern}' matches no host or group in {inventory.source}")
    return names


def _expand(pattern: str) -> list[str]:
    if not has_host_range(pattern):
        return [pattern]
    try:
        return expand_host_range(pattern)
    except HostRangeError as exc:
        raise InputError(f"--limit: {exc}") from None


def _match_piece(inventory: Inventory, piece: str) -> set[str]:
    """A host name, a group name (all its hosts, children's included) or a glob over both."""
    if _GLOB_CHARS.isdisjoint(piece):
        names = set(inventory.groups.get(piece, ()))
        names.update(host.name for host in inventory.hosts if host.name == piece)
        return names
    names = {host.name for host in inventory.hosts if fnmatch.fnmatchcase(host.name, piece)}
    for group, members in inventory.groups.items():
        if fnmatch.fnmatchcase(group, piece):
            names.update(members)
    return names


def _names_a_group(inventory: Inventory, pattern: str) -> bool:
    # A group that exists but holds no hosts is a valid, empty selection, not a typo.
    return pattern in inventory.groups
