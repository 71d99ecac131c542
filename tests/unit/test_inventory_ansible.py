"""Inventories written for Ansible load unchanged and resolve to what Ansible resolves them to.

Each case is checked against real ansible-core (`ansible-inventory --list`, and
`ansible --list-hosts` for patterns) where it is installed, and against the values Ansible
gave when these tests were written where it is not.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dcctl.errors import InputError
from dcctl.inventory import load_inventory, select_hosts
from dcctl.inventory.model import Inventory

ANSIBLE_INVENTORY = shutil.which("ansible-inventory")
ANSIBLE = shutil.which("ansible")

# Ansible's own preference among its spellings (PlayContext, ssh connection plugin).
_ADDRESS = ("ansible_ssh_host", "ansible_host")
_PORT = ("ansible_ssh_port", "ansible_port")
_USER = ("ansible_ssh_user", "ansible_user")
_KEY = ("ansible_ssh_private_key_file", "ansible_private_key_file")


def write(directory: Path, text: str) -> Path:
    path = directory / "inventory.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _first(hostvars: dict[str, Any], names: tuple[str, ...]) -> Any:
    return next((hostvars[name] for name in names if name in hostvars), None)


def ansible_view(path: Path) -> dict[str, Any]:
    """Hosts with address, port, user and key file, and each group's hosts (children's
    included), as Ansible resolves them."""
    assert ANSIBLE_INVENTORY is not None
    result = subprocess.run(
        [ANSIBLE_INVENTORY, "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1"},
        timeout=120,
    )
    listing = json.loads(result.stdout)
    hostvars: dict[str, dict[str, Any]] = listing["_meta"]["hostvars"]

    def members(group: str) -> set[str]:
        entry = listing.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            found |= members(child)
        return found

    hosts = {}
    for name, variables in hostvars.items():
        port = _first(variables, _PORT)
        hosts[name] = (
            _first(variables, _ADDRESS) or name,
            int(port) if port is not None else None,
            _first(variables, _USER),
            _first(variables, _KEY),
        )
    for name in members("all"):
        hosts.setdefault(name, (name, None, None, None))
    groups = {group: members(group) for group in listing if group != "_meta"}
    return {"hosts": hosts, "groups": groups}


def dcctl_view(inventory: Inventory) -> dict[str, Any]:
    hosts = {
        host.name: (host.address, host.port, host.user, host.key_file) for host in inventory.hosts
    }
    groups = {group: set(names) for group, names in inventory.groups.items()}
    return {"hosts": hosts, "groups": groups}


def assert_same_as_ansible(path: Path, expected: dict[str, Any]) -> Inventory:
    """dcctl's view equals `expected` (what Ansible gave), and equals Ansible's own view
    now where ansible-core is installed."""
    inventory = load_inventory(str(path), env={})
    mine = dcctl_view(inventory)
    assert mine["hosts"] == expected["hosts"]
    for group, names in expected.get("groups", {}).items():
        assert mine["groups"][group] == names, group
    if ANSIBLE_INVENTORY is not None:
        theirs = ansible_view(path)
        assert mine["hosts"] == theirs["hosts"]
        for group, names in theirs["groups"].items():
            assert mine["groups"].get(group, set()) == names, group
    return inventory


# What `ansible -i PATH all --limit LIMIT --list-hosts` lists, for many limits in one
# interpreter: the code that command runs (a fresh InventoryManager of the file, then
# CLI.get_host_list with the limit), without starting ansible-core once per limit. The command
# prints no host list when that call raises (no host left to target): an empty list here too.
_LIST_HOSTS = r"""
import json, sys
from ansible.cli import CLI
from ansible.errors import AnsibleError
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader

init_plugin_loader()
path, limits = sys.argv[1], sys.argv[2:]
selected = {}
for limit in limits:
    inventory = InventoryManager(loader=DataLoader(), sources=[path])
    try:
        selected[limit] = [host.name for host in CLI.get_host_list(inventory, limit, "all")]
    except AnsibleError:
        selected[limit] = []
json.dump(selected, sys.stdout)
"""


def ansible_list_hosts(path: Path, patterns: list[str]) -> dict[str, list[str]]:
    """pattern -> the hosts `ansible all --limit pattern --list-hosts` lists for `path`."""
    assert ANSIBLE is not None
    result = subprocess.run(
        [sys.executable, "-c", _LIST_HOSTS, str(path), *patterns],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ANSIBLE_HOST_PATTERN_MISMATCH": "ignore"},
        timeout=120,
    )
    selected: dict[str, list[str]] = json.loads(result.stdout)
    return selected


# --- 1. variables dcctl does not use ---------------------------------------------------


def test_variables_of_other_tools_are_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            k3s_version: v1.29.3+k3s1
            kube_version: v1.29.3
            http_port: 80
            hostname: ignored
            users: [alice]
            nginx_role: {worker_processes: auto}
          hosts:
            gpu01:
              ip: 10.0.0.1
              access_ip: 10.0.0.1
              etcd_member_name: etcd1
              ansible_host: 10.0.0.11
        """,
    )
    inventory = assert_same_as_ansible(path, {"hosts": {"gpu01": ("10.0.0.11", None, None, None)}})
    # No hint from another tool's variable to dcctl's: http_port is not a typo of port.
    assert inventory.warnings == ()


@pytest.mark.parametrize(
    ("written", "meant"),
    [("pyhton", "python"), ("prot", "port"), ("fabric_adress", "fabric_address"),
     ("ansible_hsot", "ansible_host"), ("scrach_dir", "scratch_dir")],
)  # fmt: skip
def test_near_miss_of_a_dcctl_name_warns_once_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], written: str, meant: str
) -> None:
    path = write(tmp_path, f"all:\n  hosts:\n    gpu[1:3]:\n      {written}: x\n")
    inventory = load_inventory(str(path), env={})
    warning = f"{path}:4: {written}: unknown variable, ignored; did you mean '{meant}'?"
    assert inventory.warnings == (warning,)
    assert capsys.readouterr().err == f"dcctl: warning: {warning}\n"


@pytest.mark.parametrize("written", ["http_port", "hostname", "users", "ports", "post", "ip"])
def test_other_tools_variables_get_no_hint(tmp_path: Path, written: str) -> None:
    path = write(tmp_path, f"all:\n  hosts:\n    gpu01:\n      {written}: x\n")
    assert load_inventory(str(path), env={}).warnings == ()


def test_unknown_expect_key_is_still_an_error_with_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    gpu01:\n      expect: {gpu_cont: 8}\n")
    with pytest.raises(
        InputError, match=r"expect\.gpu_cont: unknown key; did you mean 'gpu_count'"
    ):
        load_inventory(str(path), env={})


# --- 2. legacy spellings ---------------------------------------------------------------


def test_legacy_ansible_ssh_names_and_their_precedence(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          children:
            g:
              vars:
                ansible_ssh_host: 10.255.0.1
                ansible_user: guser
                ansible_ssh_port: 2022
              hosts:
                h1:
                  ansible_host: 10.255.0.2
                  ansible_ssh_user: huser
                  ansible_port: 2222
                h2:
                  ansible_ssh_host: 10.255.0.3
                  ansible_host: 10.255.0.4
                  ansible_private_key_file: /k1
                  ansible_ssh_private_key_file: /k2
                h3:
                  ansible_private_key_file: /k3
                  ansible_ssh_user: u3
                  ansible_ssh_port: 2200
        """,
    )
    assert_same_as_ansible(
        path,
        {
            "hosts": {
                # ansible_ssh_* wins over ansible_*, at whatever level each is set
                "h1": ("10.255.0.1", 2022, "huser", None),
                "h2": ("10.255.0.3", 2022, "guser", "/k2"),
                "h3": ("10.255.0.1", 2200, "u3", "/k3"),
            }
        },
    )


# --- 3. name:port host keys ------------------------------------------------------------

HOST_KEYS = """
all:
  hosts:
    gpu01:5309:
    "[fe80::1]:2222":
    fe80::2:
    10.1.0.1:2201:
    node[1:2]:2200: {ansible_port: 22}
    node3.example.com:2300: {ansible_ssh_port: 23}
"""


def test_host_keys_with_a_port_as_ansible_parses_them(tmp_path: Path) -> None:
    assert_same_as_ansible(
        write(tmp_path, HOST_KEYS),
        {
            "hosts": {
                "gpu01": ("gpu01", 5309, None, None),
                "fe80::1": ("fe80::1", 2222, None, None),
                "fe80::2": ("fe80::2", None, None, None),
                "10.1.0.1": ("10.1.0.1", 2201, None, None),
                "node1": ("node1", 22, None, None),
                "node2": ("node2", 22, None, None),
                "node3.example.com": ("node3.example.com", 23, None, None),
            }
        },
    )


# --- 4. ungrouped, string sections, quoted ports ---------------------------------------


def test_ungrouped_string_hosts_and_quoted_port(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          hosts:
            lone: {ansible_port: "2222"}
            both:
          children:
            web:
              hosts: web01
            db:
              hosts:
                both:
              children: web
        """,
    )
    inventory = assert_same_as_ansible(
        path,
        {
            "hosts": {
                "lone": ("lone", 2222, None, None),
                "both": ("both", None, None, None),
                "web01": ("web01", None, None, None),
            },
            "groups": {"ungrouped": {"lone"}, "web": {"web01"}, "db": {"both", "web01"}},
        },
    )
    assert select_hosts(inventory, "ungrouped")[0].name == "lone"


# --- 5. sibling groups -----------------------------------------------------------------


def test_sibling_groups_merge_by_priority_then_name(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          children:
            zeta:
              vars: {ansible_user: zeta, ansible_port: 1001}
              hosts: {a: , b: , c: }
            alpha:
              vars: {ansible_user: alpha, ansible_port: 1002}
              hosts: {a: , b: , c: }
            mid:
              vars: {ansible_user: mid, ansible_group_priority: 10}
              hosts: {b: }
            low:
              vars: {ansible_user: low, ansible_group_priority: 0}
              hosts: {c: }
        """,
    )
    assert_same_as_ansible(
        path,
        {
            "hosts": {
                "a": ("a", 1001, "zeta", None),  # by name: zeta after alpha
                "b": ("b", 1001, "mid", None),  # priority 10 beats the default 1
                "c": ("c", 1001, "zeta", None),  # priority 0 goes first
            }
        },
    )


# --- 6. --limit patterns ----------------------------------------------------------------

PATTERN_RACK = """
all:
  hosts:
    lone:
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
"""

# limit -> the hosts Ansible selects (ansible all --limit ... --list-hosts)
ANSIBLE_LIMITS = {
    "rack1[0]": {"gpu01"},
    "rack1[1:3]": {"gpu02", "gpu03", "gpu04"},
    "rack1[-1]": {"stor01"},
    "rack1[2:]": {"gpu03", "gpu04", "stor01"},
    "rack2[1-2]": {"gpu06", "node1"},
    "all[0]": {"lone"},
    "all[1]": {"gpu05"},  # all's own hosts, then its children's, level by level
    "~gpu0[1-3]": {"gpu01", "gpu02", "gpu03"},
    "~rack1_": {"gpu01", "gpu02", "gpu03", "gpu04", "stor01"},
    "rack1:&rack1_gpu:!gpu02": {"gpu01", "gpu03", "gpu04"},
    "rack1:!gpu0*": {"stor01"},
    "gpu01:gpu05": {"gpu01", "gpu05"},
    "rack2[0:1],&gpu*": {"gpu05", "gpu06"},
    "*[0]": {"lone"},
    "rack1_*[0]": {"gpu01"},
    "ungrouped": {"lone"},
    "gpu0[15]*": {"gpu01", "gpu05"},
}


RANGE_FORMS = ["gpu[01:03]", "gpu0[1]", "node[1:2]", "rack1[9]"]


@pytest.fixture(scope="module")
def ansible_selects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]] | None:
    """What Ansible selects from PATTERN_RACK for every limit below, asked once for all."""
    if ANSIBLE is None:
        return None
    path = write(tmp_path_factory.mktemp("pattern-rack"), PATTERN_RACK)
    return ansible_list_hosts(path, [*ANSIBLE_LIMITS, *RANGE_FORMS])


@pytest.mark.parametrize("limit", list(ANSIBLE_LIMITS))
def test_limit_selects_what_ansible_selects(
    tmp_path: Path, limit: str, ansible_selects: dict[str, list[str]] | None
) -> None:
    path = write(tmp_path, PATTERN_RACK)
    inventory = load_inventory(str(path), env={})
    mine = {host.name for host in select_hosts(inventory, limit)}
    assert mine == ANSIBLE_LIMITS[limit]
    if ansible_selects is not None:
        assert mine == set(ansible_selects[limit])


@pytest.mark.parametrize("limit", RANGE_FORMS)
def test_host_range_forms_are_subscripts_and_select_nothing_here(
    tmp_path: Path, limit: str, ansible_selects: dict[str, list[str]] | None
) -> None:
    # In Ansible `gpu[01:03]` is hosts 1..3 of a group `gpu`, not gpu01..gpu03.
    path = write(tmp_path, PATTERN_RACK)
    with pytest.raises(InputError):
        select_hosts(load_inventory(str(path), env={}), limit)
    if ansible_selects is not None:
        assert ansible_selects[limit] == []


# --- 7. Jinja templates ----------------------------------------------------------------


def test_templates_in_values_dcctl_does_not_use_are_ignored(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            motd: "{{ inventory_hostname }} is managed"
            ansible_host: "{{ inventory_hostname }}.mgmt"
            ansible_user: "{% if true %}root{% endif %}"
          hosts:
            gpu01: {ansible_host: 10.0.0.1, ansible_user: ubuntu}
            gpu02: {ansible_ssh_host: 10.0.0.2, ansible_ssh_user: admin}
        """,
    )
    assert_same_as_ansible(
        path,
        {
            "hosts": {
                "gpu01": ("10.0.0.1", None, "ubuntu", None),
                "gpu02": ("10.0.0.2", None, "admin", None),
            }
        },
    )


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('ansible_host: "{{ lookup(\'env\', \'H\') }}"', "ansible_host"),
        ('ansible_port: "{{ port_var }}"', "ansible_port"),
        ('ansible_python_interpreter: "{{ ansible_playbook_python }}"',
         "ansible_python_interpreter"),
        ('jump: "{# bastion #}b"', "jump"),
    ],
)  # fmt: skip
def test_template_in_a_value_a_host_uses_makes_that_host_unusable_naming_it(
    tmp_path: Path, line: str, key: str
) -> None:
    """The file loads (groups and --limit resolve as in Ansible); the host that would use the
    template carries the reason, and a run reports it instead of contacting it."""
    path = write(tmp_path, f"all:\n  vars:\n    {line}\n  hosts:\n    gpu01:\n    gpu02:\n")
    inventory = load_inventory(str(path), env={})
    problem = f"{path}:3: {key}: Jinja templates are not supported; write the value out"
    assert [host.unusable for host in inventory.hosts] == [problem, problem]


def test_unsupported_connection_makes_only_its_hosts_unusable(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "all:\n  children:\n    boxes:\n      vars: {ansible_connection: docker}\n"
        "      hosts: {box1: , box2: }\n    gpus:\n      hosts: {gpu01: }\n",
    )
    inventory = load_inventory(str(path), env={})
    problem = f"{path}:4: ansible_connection: expected 'ssh' or 'local', got 'docker'"
    assert {host.name: host.unusable for host in inventory.hosts} == {
        "box1": problem,
        "box2": problem,
        "gpu01": None,
    }


# --- 8. ProxyJump in ansible_ssh_common_args --------------------------------------------

SSH = shutil.which("ssh")

# ansible_ssh_common_args -> the jump host ssh itself reads from those arguments
SSH_ARGS = {
    "-o ProxyJump=admin@bastion:2222 -o StrictHostKeyChecking=no": "admin@bastion:2222",
    "-J ops@b2": "ops@b2",
    "-Jops@b3 -o ProxyJump=later": "ops@b3",  # ssh takes the first value given
    "-oProxyJump='z@w'": "z@w",
    '-o "ProxyJump jump1,jump2"': "jump1,jump2",
    '-o "proxyjump = j@k"': "j@k",
    "-o StrictHostKeyChecking=no": None,
    "-o ProxyJump=none": None,
}


def ssh_proxy_jump(args: str) -> str | None:
    assert SSH is not None
    result = subprocess.run(
        [SSH, "-G", *shlex.split(args), "target.example"],
        capture_output=True, text=True, check=True, timeout=30, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "proxyjump":
            return value
    return None


@pytest.mark.parametrize("args", list(SSH_ARGS))
def test_proxy_jump_in_ssh_common_args_is_the_jump_host(tmp_path: Path, args: str) -> None:
    path = write(tmp_path, "all:\n  hosts:\n    gpu01:\n")
    path.write_text(
        json.dumps({"all": {"hosts": {"gpu01": {"ansible_ssh_common_args": args}}}}),
        encoding="utf-8",
    )
    jump = load_inventory(str(path), env={}).host("gpu01").jump
    assert jump == SSH_ARGS[args]
    if SSH is not None:
        assert jump == ssh_proxy_jump(args)


def test_ssh_common_args_follow_precedence_and_jump_wins_in_one_place(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            ansible_ssh_common_args: -o ProxyJump=admin@bastion
          hosts:
            a:
            b: {ansible_ssh_common_args: -o ServerAliveInterval=30}
            c: {jump: ops@other, ansible_ssh_common_args: -o ProxyJump=ignored}
        """,
    )
    inventory = load_inventory(str(path), env={})
    assert [host.jump for host in inventory.hosts] == ["admin@bastion", None, "ops@other"]


def test_proxy_command_makes_the_host_unusable_naming_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            ansible_ssh_common_args: -o ProxyCommand="ssh -W %h:%p -q admin@bastion"
          hosts:
            gpu01:
        """,
    )
    assert load_inventory(str(path), env={}).host("gpu01").unusable == (
        f"{path}:3: ansible_ssh_common_args: ProxyCommand 'ssh -W %h:%p -q admin@bastion' is "
        "not supported; use -o ProxyJump=user@bastion, or dcctl's 'jump'"
    )


def test_proxy_command_of_a_local_host_is_never_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars:
            ansible_ssh_common_args: -o ProxyCommand="ssh -W %h:%p -q admin@bastion"
          hosts:
            localhost: {ansible_connection: local}
        """,
    )
    assert load_inventory(str(path), env={}).host("localhost").jump is None


def test_other_tools_env_and_connection_plugins_beside_dcctl_hosts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        all:
          vars: {env: prod}
          children:
            containers:
              vars: {ansible_connection: community.docker.docker}
              hosts:
                gpu01: {ansible_connection: ssh}
            gpus:
              vars: {ansible_connection: paramiko}
              hosts:
                gpu02: {env: {NCCL_DEBUG: INFO}}
        """,
    )
    inventory = load_inventory(str(path), env={})
    assert [(h.connection, h.env) for h in inventory.hosts] == [
        ("ssh", {}),
        ("ssh", {"NCCL_DEBUG": "INFO"}),
    ]


def test_dcctl_name_beside_its_ansible_spelling_is_another_tools_variable(
    tmp_path: Path,
) -> None:
    # From chutes-miner's inventory: `user` is the account its roles create.
    path = write(
        tmp_path,
        """
        all:
          vars:
            user: billybob
            ansible_user: ubuntu
            ansible_python_interpreter: auto_silent
          hosts:
            gpu01:
        """,
    )
    inventory = assert_same_as_ansible(path, {"hosts": {"gpu01": ("gpu01", None, "ubuntu", None)}})
    assert inventory.host("gpu01").python == "python3"
