"""Inventories built to exhaust the machine: each is refused at once by the real command line,
exit 2, with one line naming the file and (where there is one) the line at fault.

Each case ran out of memory, recursed until a traceback, or never returned before the limits
of dcctl.inventory.limits. No timing is asserted; the subprocess timeout is the bound a hang
would break, and it is far above what the refusals take.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import dcctl_env, run_dcctl

from dcctl.errors import InputError
from dcctl.inventory import load_inventory
from dcctl.inventory.composer import Composer
from dcctl.inventory.limits import (
    MAX_GROUPS,
    MAX_HOSTS,
    MAX_INVENTORY_BYTES,
    MAX_MERGED_ENTRIES,
    MAX_NESTING_DEPTH,
    MAX_VAR_ENTRIES,
    MAX_YAML_VALUES,
)
from dcctl.inventory.model import Host

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


def env_lines(count: int, indent: int = 6) -> str:
    return "".join(f"{' ' * indent}VAR_{n}: v{n}\n" for n in range(count))


def group_env_over(hosts: str, count: int = MAX_VAR_ENTRIES) -> str:
    """`count` variables in `all`'s env, then `hosts` (lines under `all.hosts`)."""
    return f"all:\n  vars:\n    env:\n{env_lines(count)}  hosts:\n{hosts}"


def own_env_each(hosts: int) -> str:
    """Hosts written one by one, each setting a variable of its own over `all`'s env."""
    return group_env_over("".join(f"    n{n}: {{env: {{OWN: '{n}'}}}}\n" for n in range(hosts)))


def group_cycle(length: int) -> str:
    lines = ["all:", "  hosts: {h1: }"]
    lines += [f"g{n}:\n  children: {{g{(n + 1) % length}: }}" for n in range(length)]
    return "\n".join(lines) + "\n"


# Hosts whose own env merges over a full group env before the budget runs out.
HOSTS_IN_MERGE_BUDGET = MAX_MERGED_ENTRIES // (MAX_VAR_ENTRIES + 1)


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
    "env of 20,000 variables over 1,000 hosts": Case(
        # 200 KB that took 3.3 s and 425 MB, each host copying the env: 40 GB at 100,000.
        lambda: group_env_over("    n[1:1000]:\n", 20_000),
        4 + MAX_VAR_ENTRIES,  # the first variable past the limit
        f"env: more than {MAX_VAR_ENTRIES:,} entries (dcctl's limit)",
    ),
    "expect.mounts of 1,001 paths": Case(
        lambda: (
            "all:\n  hosts: {h1: }\n  vars:\n    expect:\n      mounts:\n"
            + "".join(f"        - /m{n}\n" for n in range(MAX_VAR_ENTRIES + 1))
        ),
        6 + MAX_VAR_ENTRIES,
        f"expect.mounts: more than {MAX_VAR_ENTRIES:,} items (dcctl's limit)",
    ),
    "hosts each merging an env of their own over a full group env": Case(
        lambda: own_env_each(HOSTS_IN_MERGE_BUDGET + 10),
        5 + MAX_VAR_ENTRIES + HOSTS_IN_MERGE_BUDGET,  # the first host past the budget
        f"env and expect merged across groups and hosts copy more than "
        f"{MAX_MERGED_ENTRIES:,} entries in all (dcctl's limit)",
    ),
    "connection of 300,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: {{connection: '{'x' * 300_000}'}}\n",
        3,
        "connection: expected 'ssh' or 'local', got '" + "x" * 60 + "... (300,000 characters)'",
    ),
    "relative scratch_dir of 300,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: {{scratch_dir: '{'d' * 300_000}'}}\n",
        3,
        "scratch_dir: expected an absolute path, got '" + "d" * 60 + "... (300,000 characters)'",
    ),
    "tag of 200,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: {{port: !{'t' * 200_000} 22}}\n",
        3,
        "port: could not determine a constructor for the tag '!" + "t" * 50,
    ),
    "tag of an env value of 200,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: {{env: {{A: !{'t' * 200_000} x}}}}\n",
        3,
        "env.A: YAML tag '!" + "t" * 59 + "... (200,001 characters)' is not supported here",
    ),
    "alias name of 200,000 characters, shown cut": Case(
        lambda: f"all:\n  hosts:\n    h1: *{'a' * 200_000}\n",
        3,
        "invalid YAML: alias '*" + "a" * 60 + "... (200,000 characters)' comes before any",
    ),
    "group cycle through 5,000 groups, shown cut": Case(
        lambda: group_cycle(5000),
        None,
        "group cycle: g0 -> g1 -> g2 -> g3 -> ... (4,993 more groups) -> g4997 -> g4998 -> g4999"
        " -> g0 (each is a child of the one before)",
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
    assert line.startswith(f"dcctl: error: {where}"), line[:1000]
    assert case.says in line, line[:1000]
    # One readable line, whatever the input it quotes.
    assert len(line) < len(str(inventory)) + 400, line[:1000]


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


# --- work that grows with hosts x entries ------------------------------------------------


def load_text(tmp_path: Path, text: str) -> tuple[Host, ...]:
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(text, encoding="utf-8")
    return load_inventory(str(inventory), env={}).hosts


def distinct(values: list[dict[str, Any]]) -> int:
    return len({id(value) for value in values})


def test_hosts_share_their_groups_env_instead_of_each_a_copy(tmp_path: Path) -> None:
    # Counted: each host once made its own copy of every env entry (hosts x entries).
    hosts = load_text(tmp_path, group_env_over("    n[1:20000]:\n"))
    assert len(hosts) == 20_000
    assert distinct([host.env for host in hosts]) == 1
    assert distinct([host.expect for host in hosts]) == 1
    assert hosts[-1].env["VAR_999"] == "v999"


def test_a_range_with_an_env_of_its_own_merges_it_once(tmp_path: Path) -> None:
    hosts = load_text(tmp_path, group_env_over("    n[1:20000]: {env: {OWN: x, VAR_0: y}}\n"))
    assert distinct([host.env for host in hosts]) == 1
    env = hosts[0].env
    assert (len(env), env["OWN"], env["VAR_0"], env["VAR_1"]) == (1001, "x", "y", "v1")


def test_a_range_listed_again_merges_once_not_once_per_name(tmp_path: Path) -> None:
    text = group_env_over(
        "    n[1:20000]: {env: {FIRST: '1'}}\n"
        "  children:\n    again:\n      hosts:\n        n[1:20000]: {env: {SECOND: '2'}}\n"
    )
    hosts = load_text(tmp_path, text)
    assert distinct([host.env for host in hosts]) == 1
    env = hosts[0].env
    assert (len(env), env["FIRST"], env["SECOND"]) == (1002, "1", "2")


def test_unset_env_keys_are_dropped_once_for_hosts_that_share_them(tmp_path: Path) -> None:
    hosts = load_text(tmp_path, group_env_over("    n[1:20000]: {env: {VAR_0: ~}}\n"))
    assert distinct([host.env for host in hosts]) == 1
    assert "VAR_0" not in hosts[0].env and len(hosts[0].env) == 999


def test_hosts_each_with_their_own_env_within_the_budget_load(tmp_path: Path) -> None:
    hosts = load_text(tmp_path, own_env_each(HOSTS_IN_MERGE_BUDGET))
    assert [host.env["OWN"] for host in hosts[:2]] == ["0", "1"]
    assert len(hosts[0].env) == MAX_VAR_ENTRIES + 1


# Address space a load may take here: far above what these need (~100 MB resident), far below
# the gigabytes a copy of the env per host took.
MEMORY_CAP_BYTES = 2 * 1024**3


def run_with_memory_cap(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))

    return subprocess.run(
        [sys.executable, "-m", "dcctl", *args],
        capture_output=True,
        text=True,
        timeout=GENEROUS_TIMEOUT_S,
        env=dcctl_env(home),
        stdin=subprocess.DEVNULL,
        preexec_fn=cap,
    )


def test_full_env_on_the_most_hosts_loads_in_bounded_memory(tmp_path: Path) -> None:
    # 100,000 hosts under a 1,000-variable env: a copy per host was ~4 GB.
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(group_env_over(f"    n[1:{MAX_HOSTS}]:\n"), encoding="utf-8")
    result = run_with_memory_cap(["-i", str(inventory), "inventory", "validate"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"valid, {MAX_HOSTS} host(s)" in result.stdout


# --- `<<` merge keys -------------------------------------------------------------------

# Far above the few seconds composing 900,000 lines takes, far below the minutes PyYAML's
# flatten_mapping took on them (each `<<` deleted from the front of a 900,000-item list).
MERGE_TIMEOUT_S = 60


def merge_keys(count: int, indent: int) -> str:
    return f"{' ' * indent}<<: *e\n" * count


@pytest.mark.parametrize("where", ["host vars", "a value read whole"])
def test_many_merge_keys_in_one_mapping_take_linear_time(tmp_path: Path, where: str) -> None:
    head = "all:\n  vars:\n    ansible_empty: &e {}\n  hosts:\n    h1:\n"
    if where == "host vars":
        text = f"{head}      user: ops\n{merge_keys(900_000, 6)}"
        says = "valid, 1 host(s)"
    else:  # built by PyYAML's constructor, then found not to be a port
        text = f"{head}      port:\n{merge_keys(900_000, 8)}"
        says = "port: expected a port number 1..65535, got a mapping"
    inventory = tmp_path / "rack.yaml"
    inventory.write_text(text, encoding="utf-8")
    result = run_dcctl(["-i", str(inventory), "inventory", "validate"], home=tmp_path,
                       timeout=MERGE_TIMEOUT_S)  # fmt: skip
    assert "Traceback" not in result.stderr
    assert says in result.stdout + result.stderr, result.stderr[-2000:]
