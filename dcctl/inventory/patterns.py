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
from dcctl.inventory.messages import shorten
from dcctl.inventory.model import Host, Inventory
from dcctl.inventory.ranges import HostRangeError, expand_host_range, has_host_range

_GLOB_CHARS = frozenset("*?[")
# What one --limit may cost, all its terms together, ranges expanded: each glob is compiled
# and tried against every host and group name, and each group a term reaches adds its
# hosts. Each bound keeps it to a few seconds, however many terms share the work.
MAX_LIMIT_GLOBS = 1_000
MAX_GLOB_MATCHES = 5_000_000
MAX_LIMIT_NAMES = 1_000_000  # names the terms stand for (`gpu[1:1000]` is a thousand)
MAX_LIMIT_MEMBERS = 10_000_000  # hosts gathered from the groups the terms reach


@dataclass(frozen=True)
class _Term:
    operator: str  # "" (union), "&" (intersect) or "!" (exclude)
    pattern: str


def select_hosts(inventory: Inventory, limit: str | None) -> list[Host]:
    """The hosts `limit` selects, in inventory order; all of them when there is no `limit`."""
    terms = _parse_limit(limit) if limit is not None else []
    scope = _Scope(inventory, frozenset(host.name for host in inventory.hosts), limit or "")
    selected = _selected_names(scope, _expanded(scope, terms))
    if not selected:
        # The loader refuses an inventory without hosts, so only a limit gets here.
        raise InputError(f"--limit '{shorten(scope.limit)}' selects no host of {inventory.source}")
    return [host for host in inventory.hosts if host.name in selected]


@dataclass
class _Scope:
    """The inventory a limit is read against, with its host names as a set: a range of
    100,000 names looks each one up instead of scanning every host for it. `gathered`
    counts the hosts taken from groups so far, against MAX_LIMIT_MEMBERS."""

    inventory: Inventory
    host_names: frozenset[str]
    limit: str
    gathered: int = 0


# Each term with the names it stands for (itself, or what its ranges expand to).
_Expanded = list[tuple[_Term, list[str]]]


def _selected_names(scope: _Scope, expanded: _Expanded) -> set[str]:
    unions = [(term, pieces) for term, pieces in expanded if term.operator == ""]
    selected: set[str] = set()
    if unions:
        for term, pieces in unions:
            selected |= _matching_names(scope, term.pattern, pieces)
    else:
        selected = set(scope.host_names)
    for term, pieces in expanded:
        if term.operator == "&":
            selected &= _matching_names(scope, term.pattern, pieces)
        elif term.operator == "!":
            selected -= _matching_names(scope, term.pattern, pieces)
    return selected


def _parse_limit(limit: str) -> list[_Term]:
    """The terms of `limit` in order, each once: a repeated term selects nothing new."""
    terms: dict[_Term, None] = {}
    for raw in limit.split(","):
        text = raw.strip()
        if not text:
            continue  # tolerate `a,,b` and a trailing comma
        operator = text[0] if text[0] in "!&" else ""
        pattern = text[len(operator) :].strip()
        if not pattern:
            raise InputError(f"--limit: '{shorten(text)}' needs a host, group or pattern after it")
        terms[_Term(operator, pattern)] = None
    if not terms:
        problem = "names no host or group; leave it out for every host"
        raise InputError(f"--limit '{shorten(limit)}' {problem}")
    return list(terms)


def _expanded(scope: _Scope, terms: list[_Term]) -> _Expanded:
    """Every term's names, counted across all terms before any is matched: a limit of many
    small terms costs as much as one large one."""
    expanded: _Expanded = []
    names = globs = 0
    for term in terms:
        pieces = _expand(term.pattern)
        names += len(pieces)
        if names > MAX_LIMIT_NAMES:
            problem = f"stands for more than {MAX_LIMIT_NAMES:,} names, ranges expanded"
            raise InputError(f"--limit '{shorten(scope.limit)}': {problem} (dcctl's limit)")
        globs += sum(1 for piece in pieces if not _GLOB_CHARS.isdisjoint(piece))
        expanded.append((term, pieces))
    _check_glob_work(scope, globs)
    return expanded


def _expand(pattern: str) -> list[str]:
    if not has_host_range(pattern):
        return [pattern]
    try:
        return expand_host_range(pattern)
    except HostRangeError as exc:
        raise InputError(f"--limit: {exc}") from None


def _check_glob_work(scope: _Scope, globs: int) -> None:
    """Each glob is tried on every host and group name: a range of globs over a large
    inventory (`gpu[1:100000]*`), or a thousand globs one by one, would take hours."""
    names = len(scope.host_names) + len(scope.inventory.groups)
    if globs > MAX_LIMIT_GLOBS or globs * names > MAX_GLOB_MATCHES:
        problem = f"{globs:,} globs in all over {names:,} host and group names is too many to try"
        raise InputError(f"--limit '{shorten(scope.limit)}': {problem}")


def _matching_names(scope: _Scope, pattern: str, pieces: list[str]) -> set[str]:
    """Names of the hosts `pattern` stands for; a pattern that matches nothing is an error,
    because a typo in `!gpu01` would otherwise silently run on the host meant to be left out.
    """
    inventory = scope.inventory
    names: set[str] = set()
    groups: set[str] = set()
    for piece in pieces:
        _match_piece(scope, piece, names, groups)
    _gather(scope, groups, names)
    if not names and not _names_a_group(inventory, pattern):
        shown = shorten(pattern)
        raise InputError(f"--limit: '{shown}' matches no host or group in {inventory.source}")
    return names


def _match_piece(scope: _Scope, piece: str, hosts: set[str], groups: set[str]) -> None:
    """Add the host names and group names `piece` matches: a name, or a glob over both."""
    if _GLOB_CHARS.isdisjoint(piece):
        if piece in scope.host_names:
            hosts.add(piece)
        if piece in scope.inventory.groups:
            groups.add(piece)
        return
    hosts.update(name for name in scope.host_names if fnmatch.fnmatchcase(name, piece))
    groups.update(name for name in scope.inventory.groups if fnmatch.fnmatchcase(name, piece))


def _gather(scope: _Scope, groups: set[str], names: set[str]) -> None:
    """Add the hosts of `groups` (their children's included) to `names`, each group once."""
    members = scope.inventory.groups
    scope.gathered += sum(len(members[group]) for group in groups)
    if scope.gathered > MAX_LIMIT_MEMBERS:
        problem = f"its terms reach groups of more than {MAX_LIMIT_MEMBERS:,} hosts in all"
        raise InputError(f"--limit '{shorten(scope.limit)}': {problem} (dcctl's limit)")
    for group in groups:
        names.update(members[group])


def _names_a_group(inventory: Inventory, pattern: str) -> bool:
    # A group that exists but holds no hosts is a valid, empty selection, not a typo.
    return pattern in inventory.groups
