"""Inventories built to exhaust the machine: each is refused at once by the real command line,
exit 2, with one line naming the file and (where there is one) the line at fault.

Each case ran out of memory, recursed until a traceback, or never returned before the limits
of dcctl.inventory.limits. No timing is asserted; the subprocess timeout is the bound a hang
would break, and it is far above what the refusals take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cli_runner import run_dcctl

from dcctl.errors import InputError
from dcctl.inventory.composer import Composer
from dcctl.inventory.limits import (
    MAX_GROUPS,
    MAX_HOSTS,
    MAX_INVENTORY_BYTES,
    MAX_NESTING_DEPTH,
    MAX_YAML_VALUES,
)

# A hang or a runaway would blow through this; a refusal takes well under a second of work.
GENEROUS_TIMEOUT_S = 120


@dataclass(frozen=True)
class Case:
    text: Callable[[], str]
    line: int | None  # the line the message names; None: the file as a whole
    says: str


def alias_tree(levels: int, same_names: bool) -> str:
    """A billion laughs of groups: each level lists the one below twice, through aliases."""
    lines = ["all:", "  children:", "    g0: &g0", "      hosts: {h1: }"]
    for level in range(1, levels):
        a, b = ("a", "b") if same_names else (f"a{level}", f"b{level}")
        lines += [f"    g{level}: &g{level}",
                  f"      children: {{{a}: *g{level - 1}, {b}: *g{level - 1}}}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def group_chain(length: int) -> str:
    """Groups nested `length` deep by name, each declared flat at the top level."""
    lines = ["all:", "  hosts: {h1: }"]
    lines += [f"g{n}:\n  children: {{g{n + 1}: }}" for n in range(length)]
    return "\n".join(lines) + "\n"


def hosts_under_deep_groups(depth: int, hosts: int) -> str:
    """`hosts` hosts in a group `depth` groups deep: each host belongs to all of them."""
    lines = ["all: {}"] + [f"g{n}:\n  children: {{g{n + 1}: }}" for n in range(depth - 1)]
    return "\n".join([*lines, f"g{depth - 1}:\n  hosts:\n    n[1:{hosts}]:"]) + "\n"


def hosts_in_ranges(*ranges: str) -> str:
    return "all:\n  hosts:\n" + "".join(f"    {pattern}:\n" for pattern in ranges)


def many_groups(count: int) -> str:
    return "all:\n  hosts: {h1: }\n" + "".join(f"g{n}: {{}}\n" for n in range(count))


def deep_value(levels: int) -> str:
    return "all:\n  hosts:\n    h1:\n      ansible_x: " + "[" * levels + "]" * levels + "\n"


def long_digits(digits: int) -> str:
    return f"all:\n  hosts:\n    h1: {{port: {'9' * digits}}}\n"


CASES = {
    "range of a billion hosts": Case(
        lambda: hosts_in_ranges("node[1:1000000000]"),
        3,
        "node[1:1000000000]: bad host range: expands to 1000000000 names, more than 100,000",
    ),
    "range bound of 30 digits": Case(
        lambda: hosts_in_ranges("node[1:" + "9" * 30 + "]"), 3, "has more than 18 digits"
    ),
    "range bound in superscript digits": Case(
        lambda: hosts_in_ranges("node[1:²]"), 3, "must both be numbers or both single letters"
    ),
    "billion laughs of groups": Case(
        lambda: alias_tree(40, same_names=False),
        None,  # the alias where the count passes the limit: checked below
        f"expands the document to more than {MAX_YAML_VALUES:,} values",
    ),
    "billion laughs, the same names at every level": Case(
        lambda: alias_tree(40, same_names=True),
        None,
        f"expands the document to more than {MAX_YAML_VALUES:,} values",
    ),
    "recursive anchor in a list": Case(
        lambda: "all:\n  hosts: {h1: }\n  vars:\n    ansible_x: &a [1, *a]\n",
        4,
        "alias '*a' is inside the value '&a' names; recursive aliases are not supported",
    ),
    "mapping that contains itself": Case(
        lambda: "all: &top\n  hosts: {h1: }\n  children:\n    g: *top\n",
        4,
        "alias '*top' is inside the value '&top' names",
    ),
    "list nested 100,000 deep": Case(
        lambda: deep_value(100_000), 4, f"nested more than {MAX_NESTING_DEPTH} levels deep"
    ),
    "mapping nested 100,000 deep": Case(
        lambda: "all:\n  vars: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n",
        2,
        f"nested more than {MAX_NESTING_DEPTH} levels deep",
    ),
    "alias that nests deeper than the limit": Case(
        lambda: (
            "x: &d "
            + "[" * 40
            + "]" * 40
            + "\nall:\n  vars:\n    ansible_x: "
            + "[" * 30
            + "*d"
            + "]" * 30
            + "\n"
        ),
        4,
        f"alias '*d' makes the document nested more than {MAX_NESTING_DEPTH} levels deep",
    ),
    "file larger than the limit": Case(
        lambda: "all:\n  hosts: {h1: }\n" + ("#" * 1023 + "\n") * (MAX_INVENTORY_BYTES // 1024),
        None,
        "larger than 16 MiB, dcctl's limit for an inventory file",
    ),
    "more hosts than the limit": Case(
        lambda: hosts_in_ranges("a[1:60000]", "b[1:60000]"),
        4,
        f"b[1:60000]: more than {MAX_HOSTS:,} hosts (dcctl's limit)",
    ),
    "more groups than the limit": Case(
        lambda: many_groups(MAX_GROUPS + 1),
        3 + MAX_GROUPS - 1,  # `all` is a group too
        f"more than {MAX_GROUPS:,} groups (dcctl's limit)",
    ),
    "groups nested 2,000 deep by name": Case(
        lambda: group_chain(2000), None, "groups have more than 1,000,000 ancestors in all"
    ),
    "explicit key of 2,000,000 characters": Case(
        lambda: "all:\n  hosts:\n    h1:\n      ? " + "k" * 2_000_000 + "\n      : 1\n",
        4,
        "key: 2,000,000 characters, more than 1,024 (dcctl's limit)",
    ),
    "value of 100,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: {{port: '{'p' * 100_000}'}}\n",
        3,
        "port: expected a port number 1..65535, got '" + "p" * 60 + "... (100,000 characters)'",
    ),
    "20,000 hosts each in 101 groups": Case(
        lambda: hosts_under_deep_groups(100, 20_000),
        None,
        "hosts belong to groups more than 2,000,000 times, counting parent groups",
    ),
    "integer of 5,000 digits": Case(
        lambda: long_digits(5000), 3, "port: cannot be read as a YAML int"
    ),
    "impossible timestamp": Case(
        lambda: "all:\n  hosts: {h1: {port: 2024-13-45}}\n",
        2,
        "port: cannot be read as a YAML timestamp",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exhausting_inventory_is_refused_with_one_line(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(case.text(), encoding="utf-8")
    result = run_dcctl(["-i", str(inventory), "inventory", "validate"], home=tmp_path,
                       timeout=GENEROUS_TIMEOUT_S)  # fmt: skip
    assert result.code == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    where = f"{inventory}:{case.line}: " if case.line else f"{inventory}:"
    assert line.startswith(f"dcctl: error: {where}"), line
    assert case.says in line


def test_alias_tree_work_is_bounded_by_the_limit(tmp_path: Path) -> None:
    # Counted, not timed: composing stops at the first alias whose expansion passes the
    # limit, so the values counted stay within twice the limit, not 2**40.
    composer = Composer("rack.yaml")
    events = list(yaml.parse(alias_tree(40, same_names=False), Loader=yaml.SafeLoader))
    fed = 0
    with pytest.raises(InputError, match=r"^rack\.yaml:\d+: alias '\*g\d+' expands"):
        for event in events:
            composer.feed(event)
            fed += 1
    assert fed < len(events)
    assert MAX_YAML_VALUES < composer.values <= 2 * MAX_YAML_VALUES


def test_shared_anchors_within_the_limits_still_load(tmp_path: Path) -> None:
    text = alias_tree(8, same_names=False)  # 2**8 expansions: a real use of anchors
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(text, encoding="utf-8")
    result = run_dcctl(["-i", str(inventory), "inventory", "validate"], home=tmp_path)
    assert result.code == 0, result.stderr
    assert "valid, 1 host(s)" in result.stdout


def test_inventory_at_the_host_limit_loads(tmp_path: Path) -> None:
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(hosts_in_ranges(f"gpu[000001:{MAX_HOSTS}]"), encoding="utf-8")
    result = run_dcctl(["-i", str(inventory), "inventory", "validate"], home=tmp_path,
                       timeout=GENEROUS_TIMEOUT_S)  # fmt: skip
    assert result.code == 0, result.stderr
    assert f"valid, {MAX_HOSTS} host(s)" in result.stdout


def test_syntax_error_deep_in_a_large_file_still_names_its_line(tmp_path: Path) -> None:
    # Past the size where PyYAML's wording is fetched, libyaml's message is kept.
    hosts = "".join(f"    h{n}:\n" for n in range(40_000))
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(f"all:\n  hosts:\n{hosts}    bad: [unclosed\n", encoding="utf-8")
    result = run_dcctl(["-i", str(inventory), "inventory", "validate"], home=tmp_path)
    assert result.code == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"dcctl: error: {inventory}:40004: invalid YAML: ")
