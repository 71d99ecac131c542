"""`--limit` host patterns, as in Ansible: `rack1,gpu0*,node[01:08],!gpu007,&healthy`.

Plain terms are unioned (no plain term means every host), then each `&term` intersects and
each `!term` removes, whatever order the terms were written in.

A limit that selects no host is an error, not an empty run: a CI gate must not go green
having checked nothing. So is a limit with no terms (`-l ''`), which would select every host.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from dcctl.errors import InputError
from dcctl.inventory.model import Host, Inventory
from dcctl.inventory.ranges import HostRangeError, expand_host_range, has_host_range

_GLOB_CHARS = frozenset("*?[")
# What a range of globs such as `gpu[1:100]*` may cost: each glob is compiled, then tried
# against every host and group name. Both bounds keep it to a few seconds.
MAX_LIMIT_GLOBS = 1_000
MAX_GLOB_MATCHES = 5_000_000


@dataclass(frozen=True)
class _Term:
    operator: str  # "" (union), "&" (intersect) or "!" (exclude)
    pattern: str


def select_hosts(inventory: Inventory, limit: str | None) -> list[Host]:
    """The hosts `limit` selects, in inventory order; all of them when there is no `limit`."""
    terms = _parse_limit(limit) if limit is not None else []
    scope = _Scope(inventory, frozenset(host.name for host in inventory.hosts))
    selected = _selected_names(scope, terms)
    if not selected:
        # The loader refuses an inventory without hosts, so only a limit gets here.
        raise InputError(f"--limit '{limit}' selects no host of {inventory.source}")
    return [host for host in inventory.hosts if host.name in selected]


@dataclass(frozen=True)
class _Scope:
    """The inventory a limit is read against, with its host names as a set: a range of
    100,000 names looks each one up instead of scanning every host for it."""

    inventory: Inventory
    host_names: frozenset[str]


def _selected_names(scope: _Scope, terms: list[_Term]) -> set[str]:
    unions = [term for term in terms if term.operator == ""]
    selected: set[str] = set()
    if unions:
        for term in unions:
            selected |= _matching_names(scope, term.pattern)
    else:
        selected = set(scope.host_names)
    for term in terms:
        if term.operator == "&":
            selected &= _matching_names(scope, term.pattern)
        elif term.operator == "!":
            selected -= _matching_names(scope, term.pattern)
    return selected


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
    if not terms:
        raise InputError(f"--limit '{limit}' names no host or group; leave it out for every host")
    return terms


def _matching_names(scope: _Scope, pattern: str) -> set[str]:
    """Names of the hosts `pattern` stands for; a pattern that matches nothing is an error,
    because a typo in `!gpu01` would otherwise silently run on the host meant to be left out.
    """
    inventory = scope.inventory
    names: set[str] = set()
    pieces = _expand(pattern)
    _check_glob_work(scope, pattern, pieces)
    for piece in pieces:
        names |= _match_piece(scope, piece)
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


def _check_glob_work(scope: _Scope, pattern: str, pieces: list[str]) -> None:
    """Each glob is tried on every host and group name: a range of globs over a large
    inventory (`gpu[1:100000]*`) would take hours."""
    globs = sum(1 for piece in pieces if not _GLOB_CHARS.isdisjoint(piece))
    names = len(scope.host_names) + len(scope.inventory.groups)
    if globs > MAX_LIMIT_GLOBS or globs * names > MAX_GLOB_MATCHES:
        problem = f"{globs:,} globs over {names:,} host and group names is too many to try"
        raise InputError(f"--limit: '{pattern}': {problem}")


def _match_piece(scope: _Scope, piece: str) -> set[str]:
    """A host name, a group name (all its hosts, children's included) or a glob over both."""
    inventory = scope.inventory
    if _GLOB_CHARS.isdisjoint(piece):
        names = set(inventory.groups.get(piece, ()))
        if piece in scope.host_names:
            names.add(piece)
        return names
    names = {name for name in scope.host_names if fnmatch.fnmatchcase(name, piece)}
    for group, members in inventory.groups.items():
        if fnmatch.fnmatchcase(group, piece):
            names.update(members)
    return names


def _names_a_group(inventory: Inventory, pattern: str) -> bool:
    # A group that exists but holds no hosts is a valid, empty selection, not a typo.
    return pattern in inventory.groups
