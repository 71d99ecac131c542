"""`--limit` host patterns, as Ansible reads them: `rack1,gpu0*,!gpu007,&healthy`, also
written `rack1:&healthy:!gpu007`; `rack1[0]`, `rack1[0:3]` (subscripts: the first host of
rack1, its first four); `~gpu0[0-9]+` (a regular expression).

As in Ansible: with a comma anywhere the limit is split on commas only, else on colons
(unless the whole is one `host:port` or IPv6 address). Plain terms are unioned (no plain
term means every host), then each `&term` intersects and each `!term` removes, whatever
order the terms were written in. A term is a host name, a group (with its child groups'
hosts), a glob over host and group names (`*`, `?`, `[...]`), or `~regex` matched from the
start of host and group names. `web[1:3]` is a subscript of group `web`, never a host
range: Ansible reads it so.

A limit that selects no host is an error, not an empty run: a CI gate must not go green
having checked nothing. So is a limit with no terms (`-l ''`), which would select every host,
and a term that matches no host or group (a typo in `!gpu01` would otherwise run on the
host meant to be left out).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass

from dcctl.errors import InputError
from dcctl.inventory.addresses import parse_address
from dcctl.inventory.messages import shorten
from dcctl.inventory.model import Host, Inventory
from dcctl.inventory.ranges import HostRangeError, bounded_int

_GLOB_CHARS = frozenset("*?[")
# Ansible tries host names too, not only groups, when a term holds one of these.
_HOST_SEARCH_CHARS = frozenset(".?*[")
# What one --limit may cost, all its terms together: each glob or regex is compiled and tried
# against every host and group name, and each group a term reaches adds its hosts. Each
# bound keeps it to a few seconds, however many terms share the work.
MAX_LIMIT_GLOBS = 1_000
MAX_GLOB_MATCHES = 5_000_000
MAX_LIMIT_MEMBERS = 10_000_000  # hosts gathered from the groups the terms reach
# Characters in one `~regex`: Python's re has no time bound, so a short one is easier to read.
MAX_REGEX_CHARS = 1_000

# `name[3]`, `name[-1]`, `name[1:3]`, `name[2:]` (and Ansible's old `name[1-3]`).
_SUBSCRIPT = re.compile(r"(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]\Z", re.DOTALL)
# Ansible's colon split: runs of anything but whitespace, ':' and brackets, or a bracketed part.
_COLON_TERM = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")


@dataclass(frozen=True)
class _Term:
    operator: str  # "" (union), "&" (intersect) or "!" (exclude)
    pattern: str


@dataclass(frozen=True)
class _Matcher:
    """One term compiled: its expression, subscript, and how names are tried."""

    term: _Term
    expression: str
    subscript: tuple[int, int | None] | None
    match: Callable[[str], bool] | None  # None: a plain name, looked up


def select_hosts(inventory: Inventory, limit: str | None) -> list[Host]:
    """The hosts `limit` selects, in inventory order; all of them when there is no `limit`."""
    terms = _parse_limit(limit) if limit is not None else []
    scope = _Scope(inventory, frozenset(host.name for host in inventory.hosts), limit or "")
    selected = _selected_names(scope, _compiled(scope, terms))
    if not selected:
        # The loader refuses an inventory without hosts, so only a limit gets here.
        raise InputError(f"--limit '{shorten(scope.limit)}' selects no host of {inventory.source}")
    return [host for host in inventory.hosts if host.name in selected]


@dataclass
class _Scope:
    """The inventory a limit is read against, with its host names as a set. `gathered`
    counts the hosts taken from groups so far, against MAX_LIMIT_MEMBERS."""

    inventory: Inventory
    host_names: frozenset[str]
    limit: str
    gathered: int = 0


def _selected_names(scope: _Scope, matchers: list[_Matcher]) -> set[str]:
    unions = [matcher for matcher in matchers if matcher.term.operator == ""]
    selected: set[str] = set()
    if unions:
        for matcher in unions:
            selected |= _matching_names(scope, matcher)
    else:
        selected = set(scope.host_names)
    for matcher in matchers:
        if matcher.term.operator == "&":
            selected &= _matching_names(scope, matcher)
        elif matcher.term.operator == "!":
            selected -= _matching_names(scope, matcher)
    return selected


def split_limit(limit: str) -> list[str]:
    """The terms of `limit` as Ansible splits them (its split_host_pattern)."""
    if "," in limit:
        pieces = limit.split(",")
    elif parse_address(limit.strip()) is not None:
        pieces = [limit]  # one host:port, IPv6 address or name: its colons separate nothing
    else:
        pieces = _COLON_TERM.findall(limit)
    return [piece.strip() for piece in pieces if piece.strip()]


def _parse_limit(limit: str) -> list[_Term]:
    """The terms of `limit` in order, each once: a repeated term selects nothing new."""
    terms: dict[_Term, None] = {}
    for text in split_limit(limit):
        operator = text[0] if text[0] in "!&" else ""
        pattern = text[len(operator) :].strip()
        if not pattern:
            raise InputError(f"--limit: '{shorten(text)}' needs a host, group or pattern after it")
        terms[_Term(operator, pattern)] = None
    if not terms:
        problem = "names no host or group; leave it out for every host"
        raise InputError(f"--limit '{shorten(limit)}' {problem}")
    return list(terms)


def _compiled(scope: _Scope, terms: list[_Term]) -> list[_Matcher]:
    """Every term compiled, globs and regexes counted across all terms before any is tried:
    a limit of many small terms costs as much as one large one."""
    matchers = [_compile(term) for term in terms]
    globs = sum(1 for matcher in matchers if matcher.match is not None)
    _check_glob_work(scope, globs)
    return matchers


def _compile(term: _Term) -> _Matcher:
    pattern = term.pattern
    expression, subscript = pattern, None
    if not pattern.startswith("~"):
        expression, subscript = _split_subscript(pattern)
    if expression.startswith("~"):
        source = expression[1:]
        if len(source) > MAX_REGEX_CHARS:
            problem = f"regular expression of more than {MAX_REGEX_CHARS:,} characters"
            raise InputError(f"--limit: '{shorten(pattern)}': {problem}")
        try:
            regex = re.compile(source)
        except (re.error, RecursionError, OverflowError) as exc:
            problem = f"not a regular expression: {exc}"
            raise InputError(f"--limit: '{shorten(pattern)}': {shorten(problem)}") from None
        return _Matcher(term, expression, subscript, lambda name: regex.match(name) is not None)
    if _GLOB_CHARS.isdisjoint(expression):
        return _Matcher(term, expression, subscript, None)
    glob = re.compile(fnmatch.translate(expression))
    return _Matcher(term, expression, subscript, lambda name: glob.match(name) is not None)


def _split_subscript(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """`web[1:3]` -> ('web', (1, 3)); `web[0]` -> ('web', (0, None)); `web[2:]` -> ('web',
    (2, -1)), -1 meaning the last, as in Ansible (whose end is inclusive)."""
    found = _SUBSCRIPT.match(pattern)
    if found is None:
        return pattern, None
    expression, index, start, _, end = found.groups()
    try:
        if index is not None:
            sign = -1 if index.startswith("-") else 1
            return expression, (sign * bounded_int(pattern, index.lstrip("-")), None)
        return expression, (bounded_int(pattern, start), bounded_int(pattern, end) if end else -1)
    except HostRangeError as exc:
        raise InputError(f"--limit: {exc}") from None


def _check_glob_work(scope: _Scope, globs: int) -> None:
    """Each glob is tried on every host and group name: a thousand globs one by one over a
    large inventory would take hours. Ansible's implicit `ungrouped` is not counted."""
    groups = scope.inventory.groups
    names = len(scope.host_names) + len(groups) - ("ungrouped" in groups)
    if globs > MAX_LIMIT_GLOBS or globs * names > MAX_GLOB_MATCHES:
        problem = f"{globs:,} globs in all over {names:,} host and group names is too many to try"
        raise InputError(f"--limit '{shorten(scope.limit)}': {problem}")


def _matching_names(scope: _Scope, matcher: _Matcher) -> set[str]:
    """Names of the hosts the term stands for; a term that matches nothing is an error."""
    inventory = scope.inventory
    pattern = matcher.term.pattern
    if pattern in scope.host_names:
        return {pattern}  # as Ansible: a term that is a host's name is that host
    expression = matcher.expression
    groups = _matching_groups(scope, matcher)
    _count_gathered(scope, groups)
    hosts: list[str] = []
    if matcher.subscript is not None:
        for group in groups:
            hosts += _ordered_members(inventory, group)
    if not groups or matcher.match is not None or not _HOST_SEARCH_CHARS.isdisjoint(expression):
        if matcher.match is None:
            hosts += [expression] if expression in scope.host_names else []
        else:
            hosts += [host.name for host in inventory.hosts if matcher.match(host.name)]
    if matcher.subscript is not None:
        names = set(_apply_subscript(scope, pattern, hosts, matcher.subscript))
    else:
        names = set(hosts)
        for group in groups:
            names.update(inventory.groups[group])
    if not names and not groups:
        shown = shorten(pattern)
        raise InputError(f"--limit: '{shown}' matches no host or group in {inventory.source}")
    return names


def _matching_groups(scope: _Scope, matcher: _Matcher) -> list[str]:
    groups = scope.inventory.groups
    if matcher.match is None:
        return [matcher.expression] if matcher.expression in groups else []
    return [group for group in groups if matcher.match(group)]


def _count_gathered(scope: _Scope, groups: list[str]) -> None:
    members = scope.inventory.groups
    scope.gathered += sum(len(members[group]) for group in groups)
    if scope.gathered > MAX_LIMIT_MEMBERS:
        problem = f"its terms reach groups of more than {MAX_LIMIT_MEMBERS:,} hosts in all"
        raise InputError(f"--limit '{shorten(scope.limit)}': {problem} (dcctl's limit)")


def _ordered_members(inventory: Inventory, group: str) -> list[str]:
    """A group's hosts in Ansible's order, which a subscript counts in: its own hosts as
    listed, then its children's, level by level."""
    if not inventory.group_hosts:
        return list(inventory.groups[group])
    ordered: dict[str, None] = {}
    level, seen = [group], {group}
    while level:
        for name in level:
            ordered.update(dict.fromkeys(inventory.group_hosts.get(name, ())))
        following = []
        for name in level:
            for child in inventory.group_children.get(name, ()):
                if child not in seen:
                    seen.add(child)
                    following.append(child)
        level = following
    return list(ordered)


def _apply_subscript(
    scope: _Scope, pattern: str, hosts: list[str], subscript: tuple[int, int | None]
) -> list[str]:
    """Ansible's: `[i]` one host, `[i:j]` hosts i to j inclusive, `[i:]` from i on."""
    if not hosts:
        return hosts
    start, end = subscript
    if end:
        return hosts[start : (len(hosts) if end == -1 else end + 1)]
    if not -len(hosts) <= start < len(hosts):
        shown = shorten(pattern)
        problem = f"'{shown}': no host at index {start} ({len(hosts)} matched)"
        raise InputError(f"--limit: {problem} in {scope.inventory.source}")
    return [hosts[start]]
