"""`--limit` patterns: which hosts a command runs on."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dcctl.errors import InputError
from dcctl.inventory import load_inventory, select_hosts
from dcctl.inventory.model import Inventory

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


@pytest.mark.parametrize("limit", [None, "", "  ", ","])
def test_no_limit_selects_every_host_in_order(inventory: Inventory, limit: str | None) -> None:
    assert names(inventory, limit) == ALL_HOSTS


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
    assert names(inventory, "gpu0[15]") == ["gpu01", "gpu05"]


def test_glob_over_group_names(inventory: Inventory) -> None:
    assert names(inventory, "rack1_*") == ["gpu01", "gpu02", "gpu03", "gpu04", "stor01"]


def test_range(inventory: Inventory) -> None:
    assert names(inventory, "gpu[02:05]") == ["gpu02", "gpu03", "gpu04", "gpu05"]


def test_range_with_stride(inventory: Inventory) -> None:
    assert names(inventory, "gpu[01:06:2]") == ["gpu01", "gpu03", "gpu05"]


def test_range_partly_outside_the_inventory_selects_what_exists(inventory: Inventory) -> None:
    assert names(inventory, "node[2:9]") == ["node2", "node3"]


def test_exclude(inventory: Inventory) -> None:
    assert names(inventory, "rack1,!stor01") == ["gpu01", "gpu02", "gpu03", "gpu04"]


def test_exclude_alone_starts_from_all_hosts(inventory: Inventory) -> None:
    assert names(inventory, "!rack1,!local") == ["gpu05", "gpu06", "node1", "node2", "node3"]


def test_intersect(inventory: Inventory) -> None:
    assert names(inventory, "gpu*,&rack2") == ["gpu05", "gpu06"]


def test_intersect_alone_starts_from_all_hosts(inventory: Inventory) -> None:
    assert names(inventory, "&rack1_storage") == ["stor01"]


def test_exclude_wins_whatever_its_position(inventory: Inventory) -> None:
    assert names(inventory, "!gpu02,rack1_gpu,&gpu0[1:3]") == ["gpu01", "gpu03"]


def test_exclude_with_glob_and_range(inventory: Inventory) -> None:
    assert names(inventory, "all,!gpu*,!node[1:2]") == ["stor01", "node3", "localhost"]


def test_empty_group_is_an_empty_selection(inventory: Inventory) -> None:
    assert names(inventory, "spare") == []


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
        ("gpu[07:09]", "gpu[07:09]"),
        ("GPU01", "GPU01"),
    ],
)
def test_term_matching_nothing_is_an_error(inventory: Inventory, limit: str, term: str) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, limit)
    assert str(caught.value) == (
        f"--limit: '{term}' matches no host or group in {inventory.source}"
    )


def test_malformed_range_is_an_error(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "gpu[5:1]")
    assert str(caught.value) == "--limit: gpu[5:1]: bad host range: start 5 is after end 1"


@pytest.mark.parametrize("limit", ["!", "rack1, & "])
def test_operator_without_pattern_is_an_error(inventory: Inventory, limit: str) -> None:
    with pytest.raises(InputError, match=r"^--limit: '[!&]' needs a host, group or pattern"):
        select_hosts(inventory, limit)


def test_builtin_inventory_error_names_its_source() -> None:
    builtin = load_inventory(None, env={})
    with pytest.raises(InputError) as caught:
        select_hosts(builtin, "gpu01")
    assert str(caught.value) == "--limit: 'gpu01' matches no host or group in <built-in: localhost>"
