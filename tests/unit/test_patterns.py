"""`--limit` patterns: which hosts a command runs on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dcctl.errors import InputError
from dcctl.inventory import load_inventory, select_hosts
from dcctl.inventory.model import Inventory
from dcctl.inventory.patterns import MAX_LIMIT_GLOBS

RACK = """
all:
  children:
    rack1:
      children:
        rack1_gpu:
          hosts:
            gpu[01:04]:
        rack1_storage:
          hosts:
            stor01:
    rack2:
      hosts:
        gpu[05:06]:
        node[1:3]:
    spare:
    local:
      hosts:
        localhost:
          connection: local
"""

ALL_HOSTS = [
    "gpu01", "gpu02", "gpu03", "gpu04", "stor01",
    "gpu05", "gpu06", "node1", "node2", "node3", "localhost",
]  # fmt: skip


@pytest.fixture
def inventory(tmp_path: Path) -> Inventory:
    path = tmp_path / "rack.yaml"
    path.write_text(textwrap.dedent(RACK), encoding="utf-8")
    return load_inventory(str(path), env={})


def names(inventory: Inventory, limit: str | None) -> list[str]:
    return [host.name for host in select_hosts(inventory, limit)]


def test_no_limit_selects_every_host_in_order(inventory: Inventory) -> None:
    assert names(inventory, None) == ALL_HOSTS


@pytest.mark.parametrize("limit", ["", "  ", ",", " , ,"])
def test_limit_without_terms_is_an_error(inventory: Inventory, limit: str) -> None:
    # `-l "$HOSTS"` with HOSTS unset must not quietly mean every host.
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, limit)
    assert str(caught.value) == (
        f"--limit '{limit}' names no host or group; leave it out for every host"
    )


def test_host_name(inventory: Inventory) -> None:
    assert names(inventory, "stor01") == ["stor01"]


def test_group_includes_hosts_of_child_groups(inventory: Inventory) -> None:
    assert names(inventory, "rack1") == ["gpu01", "gpu02", "gpu03", "gpu04", "stor01"]


def test_all_group(inventory: Inventory) -> None:
    assert names(inventory, "all") == ALL_HOSTS


def test_comma_list_is_a_union_in_inventory_order(inventory: Inventory) -> None:
    assert names(inventory, "localhost, gpu02,rack1_storage") == ["gpu02", "stor01", "localhost"]


def test_overlapping_terms_select_a_host_once(inventory: Inventory) -> None:
    assert names(inventory, "gpu01,rack1_gpu,gpu0*") == [
        "gpu01", "gpu02", "gpu03", "gpu04", "gpu05", "gpu06",
    ]  # fmt: skip


def test_glob_over_host_names(inventory: Inventory) -> None:
    assert names(inventory, "node?") == ["node1", "node2", "node3"]


def test_glob_character_class(inventory: Inventory) -> None:
    # Not at the end: `gpu0[15]` would be a subscript, as in Ansible.
    assert names(inventory, "gpu0[15]*") == ["gpu01", "gpu05"]


def test_glob_over_group_names(inventory: Inventory) -> None:
    assert names(inventory, "rack1_*") == ["gpu01", "gpu02", "gpu03", "gpu04", "stor01"]


def test_exclude(inventory: Inventory) -> None:
    assert names(inventory, "rack1,!stor01") == ["gpu01", "gpu02", "gpu03", "gpu04"]


def test_exclude_alone_starts_from_all_hosts(inventory: Inventory) -> None:
    assert names(inventory, "!rack1,!local") == ["gpu05", "gpu06", "node1", "node2", "node3"]


def test_intersect(inventory: Inventory) -> None:
    assert names(inventory, "gpu*,&rack2") == ["gpu05", "gpu06"]


def test_intersect_alone_starts_from_all_hosts(inventory: Inventory) -> None:
    assert names(inventory, "&rack1_storage") == ["stor01"]


def test_exclude_wins_whatever_its_position(inventory: Inventory) -> None:
    assert names(inventory, "!gpu02,rack1,&rack1_gpu[0:2]") == ["gpu01", "gpu03"]


def test_exclude_with_glob_and_subscript(inventory: Inventory) -> None:
    assert names(inventory, "all,!gpu*,!rack2[2:3]") == ["stor01", "node3", "localhost"]


def test_empty_group_selects_nothing_which_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "spare")
    assert str(caught.value) == f"--limit 'spare' selects no host of {inventory.source}"


def test_excluding_an_empty_group_is_no_error(inventory: Inventory) -> None:
    assert names(inventory, "!spare") == ALL_HOSTS


@pytest.mark.parametrize("limit", ["!gpu*,!stor01,!node*,!localhost", "gpu01,&rack2", "!all"])
def test_limit_that_selects_nothing_is_an_error(inventory: Inventory, limit: str) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, limit)
    assert str(caught.value) == f"--limit '{limit}' selects no host of {inventory.source}"


def test_selected_hosts_are_the_inventory_hosts(inventory: Inventory) -> None:
    [host] = select_hosts(inventory, "localhost")
    assert host is inventory.host("localhost")
    assert host.connection == "local"


@pytest.mark.parametrize(
    ("limit", "term"),
    [
        ("rackx", "rackx"),
        ("rack1,rackx", "rackx"),
        ("!rackx", "rackx"),
        ("rack1,&rackx", "rackx"),
        ("gpu9*", "gpu9*"),
        ("gpu[07:09]", "gpu[07:09]"),  # a subscript of `gpu`, which does not exist
        ("gpu0[1]", "gpu0[1]"),
        ("GPU01", "GPU01"),
    ],
)
def test_term_matching_nothing_is_an_error(inventory: Inventory, limit: str, term: str) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, limit)
    assert str(caught.value) == (
        f"--limit: '{term}' matches no host or group in {inventory.source}"
    )


def test_subscript_bound_too_long_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "rack1[" + "1" * 19 + "]")
    assert str(caught.value).endswith("has more than 18 digits")


def test_subscript_past_the_end_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "rack1[9]")
    assert str(caught.value) == (
        f"--limit: 'rack1[9]': no host at index 9 (5 matched) in {inventory.source}"
    )


@pytest.mark.parametrize("limit", ["!", "rack1, & "])
def test_operator_without_pattern_is_an_error(inventory: Inventory, limit: str) -> None:
    with pytest.raises(InputError, match=r"^--limit: '[!&]' needs a host, group or pattern"):
        select_hosts(inventory, limit)


def test_builtin_inventory_error_names_its_source() -> None:
    builtin = load_inventory(None, env={})
    with pytest.raises(InputError) as caught:
        select_hosts(builtin, "gpu01")
    assert str(caught.value) == "--limit: 'gpu01' matches no host or group in <built-in: localhost>"


def test_globs_are_counted_across_all_terms_of_a_limit(inventory: Inventory) -> None:
    # One glob per term passed a check made term by term: 100,000 hosts took ~80 s.
    limit = ",".join(f"n{n}*" for n in range(MAX_LIMIT_GLOBS + 1))
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, limit)
    assert str(caught.value).endswith(
        "': 1,001 globs in all over 18 host and group names is too many to try"
    )
    assert str(caught.value).startswith(f"--limit '{limit[:60]}... (")


def test_a_repeated_term_counts_once(inventory: Inventory) -> None:
    limit = ",".join(["gpu0*"] * (MAX_LIMIT_GLOBS + 1) + ["!gpu01"] * 3)
    assert names(inventory, limit) == ["gpu02", "gpu03", "gpu04", "gpu05", "gpu06"]


def test_term_matching_nothing_is_shown_cut(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "x" * 100_000)
    assert str(caught.value) == (
        f"--limit: '{'x' * 60}... (100,000 characters)' matches no host or group in "
        f"{inventory.source}"
    )
