"""Loading YAML inventories: what a user writes, what each host resolves to, and the
one-line error each mistake gets."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from dcctl.errors import InputError
from dcctl.inventory import BUILTIN_SOURCE, load_inventory
from dcctl.inventory.expect_keys import EXPECT_KEYS
from dcctl.inventory.model import DEFAULT_PYTHON, DEFAULT_SCRATCH_DIR, Inventory

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so error messages carry the short relative file name."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(directory: Path, text: str, name: str = "rack.yaml") -> str:
    (directory / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return name


def load(directory: Path, text: str) -> Inventory:
    return load_inventory(write(directory, text), env={})


def load_error(directory: Path, text: str) -> str:
    with pytest.raises(InputError) as caught:
        load(directory, text)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- which inventory -------------------------------------------------------------------


def test_builtin_inventory_when_nothing_is_given() -> None:
    inventory = load_inventory(None, env={})
    assert inventory.source == BUILTIN_SOURCE == "<built-in: localhost>"
    [host] = inventory.hosts
    assert host.name == "localhost"
    assert host.address == "localhost"
    assert host.connection == "local"
    assert host.python == sys.executable
    assert host.groups == ("all",)
    assert inventory.groups == {"all": ("localhost",)}


def test_dcctl_inventory_env_is_used_without_a_path(in_tmp: Path) -> None:
    path = write(in_tmp, "all: {hosts: {from-env: }}")
    inventory = load_inventory(None, env={"DCCTL_INVENTORY": path})
    assert inventory.source == path
    assert [host.name for host in inventory.hosts] == ["from-env"]


def test_explicit_path_wins_over_dcctl_inventory(in_tmp: Path) -> None:
    given = write(in_tmp, "all: {hosts: {given: }}", "given.yaml")
    from_env = write(in_tmp, "all: {hosts: {from-env: }}", "env.yaml")
    inventory = load_inventory(given, env={"DCCTL_INVENTORY": from_env})
    assert [host.name for host in inventory.hosts] == ["given"]


def test_empty_dcctl_inventory_means_builtin() -> None:
    assert load_inventory(None, env={"DCCTL_INVENTORY": ""}).source == BUILTIN_SOURCE


def test_dcctl_inventory_pointing_nowhere_is_an_error(in_tmp: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_inventory(None, env={"DCCTL_INVENTORY": "gone.yaml"})
    assert str(caught.value) == "gone.yaml: inventory file not found"


@pytest.mark.parametrize("name", ["local.yaml", "example-rack.yaml"])
def test_shipped_inventories_load(name: str) -> None:
    inventory = load_inventory(str(REPO_ROOT / "inventories" / name), env={})
    assert inventory.hosts
    assert "localhost" in inventory.groups["all"]
    assert inventory.host("localhost").connection == "local"


def test_shipped_local_inventory_is_localhost_only() -> None:
    inventory = load_inventory(str(REPO_ROOT / "inventories" / "local.yaml"), env={})
    assert [(host.name, host.connection) for host in inventory.hosts] == [("localhost", "local")]


def test_example_rack_shows_every_expect_key() -> None:
    inventory = load_inventory(str(REPO_ROOT / "inventories" / "example-rack.yaml"), env={})
    compute = inventory.host("gpu001.rack1.example.com")
    assert set(compute.expect) == set(EXPECT_KEYS)
    assert compute.jump is not None
    assert "NCCL_SOCKET_IFNAME" in compute.env
    assert len(inventory.groups["rack1_compute"]) == 16


# --- structure -------------------------------------------------------------------------


def test_hosts_keep_first_seen_order_and_a_repeated_host_is_one_host(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          children:
            rack1:
              hosts: {b: , a: }
            gpus:
              hosts: {c: , b: }
        """,
    )
    assert [host.name for host in inventory.hosts] == ["b", "a", "c"]
    # Lowest precedence first: at one depth, by name (as Ansible merges them).
    assert inventory.host("b").groups == ("all", "gpus", "rack1")


def test_groups_include_ancestors_and_all(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          children:
            dc:
              children:
                rack1:
                  hosts: {gpu01: }
            other:
              hosts: {cpu01: }
        """,
    )
    assert inventory.host("gpu01").groups == ("all", "dc", "rack1")
    assert inventory.groups == {
        "all": ("gpu01", "cpu01"),
        "dc": ("gpu01",),
        "rack1": ("gpu01",),
        "other": ("cpu01",),
        "ungrouped": (),
    }


def test_top_level_groups_are_children_of_all(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars: {user: admin}
        rack1:
          hosts: {gpu01: }
        """,
    )
    host = inventory.host("gpu01")
    assert host.groups == ("all", "rack1")
    assert host.user == "admin"


def test_empty_group_is_kept(in_tmp: Path) -> None:
    inventory = load(in_tmp, "all: {hosts: {a: }, children: {spare: }}")
    assert inventory.groups["spare"] == ()


def test_host_range_in_inventory(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          hosts:
            gpu[01:03].rack1:
              port: 2222
        """,
    )
    assert [host.name for host in inventory.hosts] == ["gpu01.rack1", "gpu02.rack1", "gpu03.rack1"]
    assert {host.port for host in inventory.hosts} == {2222}


def test_defaults(in_tmp: Path) -> None:
    host = load(in_tmp, "all: {hosts: {gpu01: }}").host("gpu01")
    assert host.address == "gpu01"
    assert host.connection == "ssh"
    assert (host.port, host.user, host.key_file, host.jump, host.fabric_address) == (None,) * 5
    assert host.python == DEFAULT_PYTHON
    assert host.scratch_dir == DEFAULT_SCRATCH_DIR
    assert host.env == {}
    assert host.expect == {}


def test_yaml_anchors_and_merge_keys(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          hosts:
            a: &common {user: ops, port: 2200}
            b:
              <<: *common
              port: 2201
        """,
    )
    assert (inventory.host("a").user, inventory.host("a").port) == ("ops", 2200)
    assert (inventory.host("b").user, inventory.host("b").port) == ("ops", 2201)


def test_merged_anchor_reached_again_by_an_alias(in_tmp: Path) -> None:
    # Merging `*tuned` into g's vars once rewrote the anchored mapping in place, so k, which
    # uses it whole, read `user` twice: "duplicate key".
    inventory = load(
        in_tmp,
        """
        all:
          vars: &base {user: ops, port: 22}
          children:
            h:
              vars: &tuned
                <<: *base
                user: admin
              hosts: {h1: }
            g:
              vars:
                <<: *tuned
                port: 2222
              hosts: {g1: }
            k:
              vars: *tuned
              hosts: {k1: }
        """,
    )
    resolved = {host.name: (host.user, host.port) for host in inventory.hosts}
    assert resolved == {"h1": ("admin", 22), "g1": ("admin", 2222), "k1": ("admin", 22)}


MERGE_ANCHORS = """
all:
  vars:
    ansible_a: &a {user: from-a, port: 1}
    ansible_b: &b {user: from-b, port: 2, jump: from-b}
    ansible_c: &c {jump: from-c}
    ansible_ab: &ab {<<: *a, jump: from-ab}
  hosts:
    h1: %s
"""


# (user, port, jump) per host mapping, as the YAML merge-key spec and PyYAML up to 6.0.3 resolve
# them: a later `<<` wins over an earlier one, within a list the earlier mapping wins, own keys
# win. PyYAML 6.0.4 lets the later mapping of a list win, against the spec; dcctl keeps the spec
# whichever PyYAML is installed, so these values are written out rather than asked of PyYAML.
MERGES = {
    "{<<: *a, <<: *b}": ("from-b", 2, "from-b"),
    "{<<: *b, <<: *a}": ("from-a", 1, "from-b"),
    "{<<: [*a, *b]}": ("from-a", 1, "from-b"),
    "{<<: [*b, *a]}": ("from-b", 2, "from-b"),
    "{<<: *a, port: 3}": ("from-a", 3, None),
    "{port: 3, <<: *a}": ("from-a", 3, None),
    "{<<: *a, <<: [*c, *b], user: own}": ("own", 2, "from-c"),
    "{<<: [*ab, *b]}": ("from-a", 1, "from-ab"),
    "{<<: *ab, <<: *c}": ("from-a", 1, "from-c"),
}


@pytest.mark.parametrize("host", sorted(MERGES))
def test_merge_keys_resolve_as_the_yaml_spec_says(in_tmp: Path, host: str) -> None:
    resolved = load(in_tmp, MERGE_ANCHORS % host).host("h1")
    assert (resolved.user, resolved.port, resolved.jump) == MERGES[host]


def test_merge_of_something_not_a_mapping_is_pyyamls_error(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    h1: {<<: [{user: a}, 3]}\n")
    assert message == "rack.yaml:3: h1: expected a mapping for merging, but found scalar"


# --- precedence ------------------------------------------------------------------------


def test_host_beats_child_beats_parent_beats_all(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars: {user: from-all, jump: all-jump, python: /all/python, port: 1}
          children:
            dc:
              vars: {user: from-dc, jump: dc-jump, port: 2}
              children:
                rack1:
                  vars: {user: from-rack1, port: 3}
                  hosts:
                    gpu01:
                      port: 4
                    gpu02:
        """,
    )
    gpu01, gpu02 = inventory.host("gpu01"), inventory.host("gpu02")
    assert (gpu01.port, gpu01.user, gpu01.jump, gpu01.python) == (
        4,
        "from-rack1",
        "dc-jump",
        "/all/python",
    )
    assert gpu02.port == 3


def test_deeper_group_wins_even_when_written_first(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          children:
            dc:
              children:
                rack1:
                  vars: {user: deep}
                  hosts: {gpu01: }
            shallow:
              vars: {user: shallow}
              hosts: {gpu01: }
        """,
    )
    assert inventory.host("gpu01").user == "deep"


def test_equal_depth_groups_merge_by_name_not_file_order(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          children:
            zeta:
              vars: {user: zeta, port: 1}
              hosts: {gpu01: }
            alpha:
              vars: {user: alpha}
              hosts: {gpu01: }
        """,
    )
    host = inventory.host("gpu01")
    assert (host.user, host.port) == ("zeta", 1)


def test_group_depth_is_the_longest_path_from_all(in_tmp: Path) -> None:
    # `rack1` is both top level (depth 1) and under dc (depth 2): it counts as depth 2,
    # so it beats `other`, a depth-1 group written after it.
    inventory = load(
        in_tmp,
        """
        rack1:
          vars: {user: rack1}
          hosts: {gpu01: }
        dc:
          children:
            rack1:
        other:
          vars: {user: other}
          hosts: {gpu01: }
        """,
    )
    assert inventory.host("gpu01").user == "rack1"


def test_expect_and_env_merge_key_by_key(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars:
            env: {NCCL_DEBUG: WARN, NCCL_SOCKET_IFNAME: eth0}
            expect: {gpu_count: 8, driver: ">=550.54", os: "Ubuntu*"}
          children:
            rack1:
              vars:
                env: {NCCL_SOCKET_IFNAME: bond0}
                expect: {driver: ">=560"}
              hosts:
                gpu01:
                  expect: {gpu_count: 7}
        """,
    )
    host = inventory.host("gpu01")
    assert host.env == {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "bond0"}
    assert host.expect == {"gpu_count": 7, "driver": ">=560", "os": "Ubuntu*"}


def test_host_vars_from_two_listings_merge_later_wins(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          children:
            a:
              hosts:
                gpu01: {user: one, port: 2200, env: {X: "1"}}
            b:
              hosts:
                gpu01: {user: two, env: {Y: "2"}}
        """,
    )
    host = inventory.host("gpu01")
    assert (host.user, host.port, host.env) == ("two", 2200, {"X": "1", "Y": "2"})


def test_null_unsets_what_a_group_set(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars:
            jump: bastion
            port: 2200
            env: {A: "1", B: "2"}
            expect: {gpu_count: 8, driver: ">=550"}
          hosts:
            gpu01:
            stor01:
              jump: ~
              port: ~
              env: {A: ~}
              expect: {driver: ~}
            login01:
              expect: ~
        """,
    )
    assert inventory.host("gpu01").jump == "bastion"
    storage = inventory.host("stor01")
    assert (storage.jump, storage.port) == (None, None)
    assert storage.env == {"B": "2"}
    assert storage.expect == {"gpu_count": 8}
    assert inventory.host("login01").expect == {}


# --- variables, aliases and types ------------------------------------------------------


def test_ansible_aliases(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
              ansible_host: 10.0.0.1
              ansible_port: 2222
              ansible_user: ubuntu
              ansible_ssh_private_key_file: /keys/id
              ansible_connection: local
              ansible_python_interpreter: /usr/bin/python3.11
        """,
    ).host("gpu01")
    assert host.address == "10.0.0.1"
    assert host.port == 2222
    assert host.user == "ubuntu"
    assert host.key_file == "/keys/id"
    assert host.connection == "local"
    assert host.python == "/usr/bin/python3.11"


def test_alias_in_group_overridden_by_dcctl_name_on_host(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          vars: {ansible_user: from-group}
          hosts:
            gpu01: {user: from-host}
        """,
    )
    assert inventory.host("gpu01").user == "from-host"


def test_other_ansible_vars_are_ignored(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
              ansible_become: true
              ansible_password: !vault |
                $ANSIBLE_VAULT;1.1;AES256
                6162
        """,
    ).host("gpu01")
    assert host.name == "gpu01"


def test_every_dcctl_var(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
              host: 10.0.0.1
              port: 22
              user: root
              key_file: /keys/id_ed25519
              connection: ssh
              python: /opt/venv/bin/python
              jump: admin@bastion:2222
              env: {NCCL_SOCKET_IFNAME: ib0}
              fabric_address: 10.2.0.1
              scratch_dir: /scratch/dcctl
              expect: {gpu_count: 8}
        """,
    ).host("gpu01")
    assert host.jump == "admin@bastion:2222"
    assert host.fabric_address == host.rendezvous_address == "10.2.0.1"
    assert host.scratch_dir == "/scratch/dcctl"
    assert host.env == {"NCCL_SOCKET_IFNAME": "ib0"}


def test_relative_key_file_is_taken_from_where_dcctl_runs_as_in_ansible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    subdir = tmp_path / "inventories"
    subdir.mkdir()
    path = write(subdir, "all: {hosts: {gpu01: {key_file: keys/id_rack}}}")
    monkeypatch.chdir(tmp_path)
    host = load_inventory(str(subdir / path), env={}).host("gpu01")
    assert host.key_file == str(tmp_path / "keys" / "id_rack")


def test_key_file_tilde_is_expanded(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/operator")
    host = load(in_tmp, "all: {hosts: {gpu01: {key_file: ~/.ssh/id_rack}}}").host("gpu01")
    assert host.key_file == "/home/operator/.ssh/id_rack"


def test_env_values_are_kept_as_written(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
              env:
                NCCL_IB_DISABLE: 0
                NCCL_IB_HCA: 0x1
                VERSION: 12.10
                FLAG: on
                NAME: "quoted text"
        """,
    ).host("gpu01")
    assert host.env == {
        "NCCL_IB_DISABLE": "0",
        "NCCL_IB_HCA": "0x1",
        "VERSION": "12.10",
        "FLAG": "on",
        "NAME": "quoted text",
    }


def test_expect_values_are_typed(in_tmp: Path) -> None:
    host = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
              expect:
                os: "Ubuntu 22.04*"
                kernel: ">=5.15"
                driver: 550.54
                cuda: 12.10
                gpu_count: 8
                gpu_model: "*H100*"
                min_memory_gb: 1.5
                swap: off
                mounts: [/scratch, /home]
                ib_ports: 4
                ib_rate: 400
        """,
    ).host("gpu01")
    assert host.expect == {
        "os": "Ubuntu 22.04*",
        "kernel": ">=5.15",
        "driver": "550.54",
        "cuda": "12.10",  # as written, not the float 12.1
        "gpu_count": 8,
        "gpu_model": "*H100*",
        "min_memory_gb": 1.5,
        "swap": "off",
        "mounts": ["/scratch", "/home"],
        "ib_ports": 4,
        "ib_rate": 400,
    }


@pytest.mark.parametrize(
    ("written", "expected"),
    [("on", "on"), ("off", "off"), ("yes", "on"), ("false", "off"), ("'on'", "on")],
)
def test_swap_accepts_yaml_booleans(in_tmp: Path, written: str, expected: str) -> None:
    host = load(in_tmp, f"all: {{hosts: {{gpu01: {{expect: {{swap: {written}}}}}}}}}")
    assert host.host("gpu01").expect == {"swap": expected}


# --- errors: file and YAML -------------------------------------------------------------


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(InputError) as caught:
        load_inventory("nope.yaml", env={})
    assert str(caught.value) == "nope.yaml: inventory file not found"


def test_directory_instead_of_file(in_tmp: Path) -> None:
    (in_tmp / "inventories").mkdir()
    with pytest.raises(InputError) as caught:
        load_inventory("inventories", env={})
    assert str(caught.value) == "inventories: is a directory, not an inventory file"


def test_other_os_error_is_one_line(in_tmp: Path) -> None:
    # A path through a regular file fails to open for root too (unlike a chmod 0 file).
    write(in_tmp, "all: {hosts: {a: }}")
    with pytest.raises(InputError) as caught:
        load_inventory("rack.yaml/inner.yaml", env={})
    assert str(caught.value) == "rack.yaml/inner.yaml: cannot read inventory: Not a directory"


def test_not_utf8(in_tmp: Path) -> None:
    (in_tmp / "rack.yaml").write_bytes(b"all:\n  hosts: {caf\xe9: }\n")
    with pytest.raises(InputError) as caught:
        load_inventory("rack.yaml", env={})
    assert str(caught.value) == "rack.yaml: not UTF-8 text (bad byte at offset 18)"


def test_invalid_yaml_names_its_line(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          hosts:
          gpu01: x
            gpu02: y
        """,
    )
    assert message == "rack.yaml:4: invalid YAML: mapping values are not allowed here"


def test_tab_indentation(in_tmp: Path) -> None:
    (in_tmp / "rack.yaml").write_text("all:\n\thosts:\n", encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_inventory("rack.yaml", env={})
    assert str(caught.value).startswith("rack.yaml:2: invalid YAML: found character '\\t'")


def test_two_documents(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all: {hosts: {a: }}\n---\nall: {}\n")
    assert message == (
        "rack.yaml:2: invalid YAML: expected a single document in the stream"
        " but found another document"
    )


def test_empty_file(in_tmp: Path) -> None:
    message = load_error(in_tmp, "# nothing yet\n")
    assert message == "rack.yaml: inventory is empty; expected a mapping with 'all:'"


def test_top_level_not_a_mapping(in_tmp: Path) -> None:
    message = load_error(in_tmp, "- gpu01\n- gpu02\n")
    assert message == (
        "rack.yaml:1: top level: expected a mapping of groups such as 'all:', got a list"
    )


def test_no_hosts(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all: {vars: {user: root}}")
    assert message == "rack.yaml: the inventory defines no hosts"


# --- errors: structure -----------------------------------------------------------------


def test_unknown_group_key_with_hint(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          children:
            rack1:
              hots:
                gpu01:
        """,
    )
    assert message == "rack.yaml:4: rack1.hots: unknown key; did you mean 'hosts'?"


def test_unknown_group_key_without_close_match(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  members: {a: }\n")
    assert message == "rack.yaml:2: all.members: unknown key; a group holds hosts, vars, children"


def test_hosts_as_a_list(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    - gpu01\n")
    assert message == "rack.yaml:3: all.hosts: expected a mapping, got a list"


def test_duplicate_key_the_later_one_wins_with_a_warning_as_in_ansible(in_tmp: Path) -> None:
    inventory = load(
        in_tmp,
        """
        all:
          hosts:
            gpu01:
          hosts:
            gpu02:
        """,
    )
    assert [host.name for host in inventory.hosts] == ["gpu02"]
    assert inventory.warnings == (
        "rack.yaml:4: hosts: duplicate key (first at line 2); the later one is used, as in Ansible",
    )


def test_bad_host_range_names_its_line(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    gpu[5:1]:\n")
    assert message == "rack.yaml:3: gpu[5:1]: bad host range: start 5 is after end 1"


def test_non_numeric_range_bound(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    gpu[01:x]:\n")
    assert message == (
        "rack.yaml:3: gpu[01:x]: bad host range:"
        " bounds '01' and 'x' must both be numbers or both single letters"
    )


def test_unclosed_range(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    'gpu[01':\n")
    assert message == "rack.yaml:3: gpu[01: bad host range: '[' is never closed"


def test_host_name_with_a_space(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    gpu 01:\n")
    assert message.startswith("rack.yaml:3: gpu 01: invalid host name")


def test_group_cycle(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          children:
            a:
              children:
                b:
                  children:
                    a:
                  hosts: {gpu01: }
        """,
    )
    assert message == (
        "rack.yaml:7: a: group cycle: a -> b -> a (each is a child of the one before)"
    )


def test_all_as_a_child(in_tmp: Path) -> None:
    message = load_error(in_tmp, "rack1:\n  children:\n    all:\n")
    assert message == "rack.yaml:3: all: 'all' holds every group; it cannot be a child"


# --- errors: variables -----------------------------------------------------------------


def test_unknown_expect_key_with_hint(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          vars:
            expect:
              driver: ">=550"
              drivr: ">=550"
          hosts: {gpu01: }
        """,
    )
    assert message == "rack.yaml:5: expect.drivr: unknown key; did you mean 'driver'?"


def test_unknown_expect_key_without_close_match(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all: {hosts: {gpu01: {expect: {colour: blue}}}}")
    assert message == "rack.yaml:1: expect.colour: unknown key"


def test_near_miss_of_a_dcctl_var_is_a_warning(in_tmp: Path) -> None:
    inventory = load(in_tmp, "all:\n  hosts:\n    gpu01:\n      prot: 22\n")
    assert inventory.host("gpu01").port is None
    assert inventory.warnings == (
        "rack.yaml:4: prot: unknown variable, ignored; did you mean 'port'?",
    )


def test_expect_key_written_as_a_var_is_a_warning(in_tmp: Path) -> None:
    inventory = load(in_tmp, "all:\n  vars:\n    gpu_count: 8\n  hosts: {a: }\n")
    assert inventory.warnings == (
        "rack.yaml:3: gpu_count: ignored; did you mean 'expect.gpu_count'?",
    )


def test_unknown_var_without_close_match_is_ignored_silently(in_tmp: Path) -> None:
    inventory = load(in_tmp, "all:\n  hosts:\n    gpu01:\n      colour: blue\n")
    assert inventory.warnings == ()


def test_name_and_alias_together_the_ansible_spelling_wins(in_tmp: Path) -> None:
    # Real inventories set `user:` for their own roles beside `ansible_user:`.
    for text in ("user: x\n      ansible_user: y\n", "ansible_user: y\n      user: x\n"):
        inventory = load(in_tmp, f"all:\n  hosts:\n    a:\n      {text}")
        assert inventory.host("a").user == "y"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("port: 70000", "port: expected a port number 1..65535, got 70000"),
        ("port: 0", "port: expected a port number 1..65535, got 0"),
        ("ansible_port: 'ssh'", "ansible_port: expected a port number 1..65535, got 'ssh'"),
        ("port: true", "port: expected a port number 1..65535, got true"),
        ("scratch_dir: tmp/dcctl", "scratch_dir: expected an absolute path, got 'tmp/dcctl'"),
        ("user: 1000", "user: expected a non-empty string, got 1000"),
        ("python: [python3]", "python: expected a non-empty string, got a list"),
        ("env: {NCCL_DEBUG: [INFO]}", "env.NCCL_DEBUG: expected a string or number, got a list"),
        ("env: {1BAD: x}", "env.1BAD: not a valid environment variable name"),
        ("env: [A=1]", "env: expected a mapping, got a list"),
        (
            "expect: {gpu_count: eight}",
            "expect.gpu_count: expected a whole number >= 0, got 'eight'",
        ),
        ("expect: {gpu_count: 8.0}", "expect.gpu_count: expected a whole number >= 0, got 8.0"),
        ("expect: {ib_ports: -1}", "expect.ib_ports: expected a whole number >= 0, got -1"),
        ("expect: {ib_rate: 0}", "expect.ib_rate: expected a whole number > 0, got 0"),
        ("expect: {min_memory_gb: true}", "expect.min_memory_gb: expected a number >= 0, got true"),
        ("expect: {swap: maybe}", "expect.swap: expected 'on' or 'off', got 'maybe'"),
        (
            "expect: {mounts: /scratch}",
            "expect.mounts: expected a list of mount points, got '/scratch'",
        ),
        ("expect: {mounts: [scratch]}", "expect.mounts: expected an absolute path, got 'scratch'"),
        (
            "expect: {mounts: ['{{ scratch }}']}",
            "expect.mounts: Jinja templates are not supported; write the value out",
        ),
        ("expect: [gpu_count]", "expect: expected a mapping, got a list"),
        ("expect: {ecc: maybe}", "expect.ecc: expected 'on', 'off' or 'any', got 'maybe'"),
        (
            "expect: {kernel: '=>5.15'}",
            "expect.kernel: invalid version requirement '=>5.15': expected an operator "
            "(>=, >, <=, <, ==, !=) or none, then a dotted version, e.g. '>=5.15'",
        ),
        (
            "expect: {xid_status: {63: reboot}}",
            "expect.xid_status.63: expected 'fail', 'warn', 'count' or 'ignore', got 'reboot'",
        ),
        (
            "expect: {gemm_min_efficiency: 70}",
            "expect.gemm_min_efficiency: expected a fraction from 0 to 1, got 70",
        ),
        ("user: !vault abc", "user: could not determine a constructor for the tag '!vault'"),
        # Mappings and lists once carried the tag 'None' and read as "no constructor".
        ("port: {a: 1}", "port: expected a port number 1..65535, got a mapping"),
        ("port: [22]", "port: expected a port number 1..65535, got a list"),
        # An explicit tag on text that does not fit it was a traceback inside PyYAML.
        ("port: !!bool maybe", "port: cannot be read as a YAML bool"),
        ("port: !!int +", "port: cannot be read as a YAML int"),
        ("port: !!float ''", "port: cannot be read as a YAML float"),
        ("port: !!timestamp soon", "port: cannot be read as a YAML timestamp"),
    ],
)
def test_bad_value_names_file_line_and_key(in_tmp: Path, line: str, message: str) -> None:
    text = f"all:\n  hosts:\n    gpu01:\n      {line}\n"
    assert load_error(in_tmp, text) == f"rack.yaml:4: {message}"


def test_host_vars_not_a_mapping(in_tmp: Path) -> None:
    message = load_error(in_tmp, "all:\n  hosts:\n    gpu01: 10.0.0.1\n")
    assert message == "rack.yaml:3: gpu01: expected a mapping, got '10.0.0.1'"


def test_error_in_group_vars_names_the_value_line(in_tmp: Path) -> None:
    message = load_error(
        in_tmp,
        """
        all:
          children:
            rack1:
              vars:
                user: root
                port: 99999
              hosts: {gpu01: }
        """,
    )
    assert message == "rack.yaml:6: port: expected a port number 1..65535, got 99999"


def test_error_message_carries_the_path_as_given(tmp_path: Path) -> None:
    path = str(tmp_path / "rack.yaml")
    write(tmp_path, "all: {hosts: {a: {port: 0}}}")
    with pytest.raises(InputError) as caught:
        load_inventory(path, env={})
    assert str(caught.value) == f"{path}:1: port: expected a port number 1..65535, got 0"


def test_health_keys_are_typed(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "all:\n  vars:\n    expect:\n      fabric_manager: on\n      nvidia_peermem: off\n"
        "      ignore_xids: [13, 31]\n      xid_window_h: 6\n  hosts:\n    a:\n"
    )
    expect = load_inventory(str(good)).hosts[0].expect
    assert expect["fabric_manager"] == "required"
    assert expect["nvidia_peermem"] == "off"
    assert expect["ignore_xids"] == [13, 31]
    bad = tmp_path / "bad.yaml"
    bad.write_text("all:\n  vars:\n    expect:\n      xid_window_h: 0\n  hosts:\n    a:\n")
    with pytest.raises(InputError, match=r"bad.yaml:4: expect.xid_window_h: expected a number > 0"):
        load_inventory(str(bad))
