"""Real Ansible inventories from public repositories, read by dcctl and by Ansible itself.

Each file under tests/fixtures/inventories/real/ is copied verbatim from a public repository (its
first line names the source commit). For every one, dcctl must resolve the same hosts per group,
the same hosts per pattern, and the same address/port/user/key file per host as ansible-core does
(DESIGN.md, "Inventory": an operator's inventory loads unchanged and resolves like
`ansible-inventory --list`). Fields whose raw value is a Jinja template are not compared: Ansible
templates them at run time, dcctl reports them (see JINJA_MARK).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_oracle import (
    JINJA_MARK,
    ansible_available,
    ansible_view,
    ansible_views,
    cli_groups,
    flattened_yaml,
)

if not ansible_available():
    pytest.skip(
        "ansible-core is not installed (pip install 'ansible-core>=2.16', in the dev extra): "
        "it is the oracle these tests compare dcctl's inventory semantics with",
        allow_module_level=True,
    )

CORPUS = Path(__file__).parent.parent / "fixtures" / "inventories" / "real"
FILES = sorted(CORPUS.glob("*.yaml"))


# Files whose hosts dcctl loads but cannot reach, each with the reason every such host gives: a
# connection plugin other than ssh/local, or a Jinja template in a value the host would use.
# Ansible reaches them (it has those plugins and templates); dcctl keeps them in every group and
# pattern, as Ansible does, and a run reports them as `inventory` errors without contacting
# them. Strict both ways: a host with any other reason, or a file with none, fails the test.
UNREACHABLE_HOSTS = {
    "ansible--meta_tasks-inventory.yaml": "ansible_python_interpreter: Jinja templates",
    "ansible-infra--all.yaml": "ansible_python_interpreter: Jinja templates",
    "ansible-infra--remote-sites.yaml": "ansible_python_interpreter: Jinja templates",
    "netology-yc-kubernetes-cluster--hosts.yaml": "ansible_host: Jinja templates",
    "ansible-navigator--inventory.yaml": "got 'ansible.netcommon.network_cli'",
    "cp-ansible--ssm_hostname_aliasing.yaml": "got 'amazon.aws.aws_ssm'",
    "k3s-ansible--tests-ha.yaml": "got 'docker'",
    "molecule--podman-hosts.yaml": "got 'containers.podman.podman'",
    "ansible-datacenter--hosts.yaml": "got 'winrm'",
    "nft-ansible--production-hosts.yaml": "got 'network_cli'",
    "nas-incus--production.yaml": "got 'community.general.incus'",
    "catherinevee-ansible--development-hosts.yaml": "got 'network_cli'",
    "Homelab--inventory.yaml": "ansible_host: Jinja templates",
    "homelab--home.yaml": "ansible_ssh_private_key_file: Jinja templates",
    "ipu-automation--hosts.yaml": "Jinja templates",
    "IAC-AD--inventory.yaml": "ProxyCommand",
    "AnixOps-ansible--production-hosts-example.yaml": "ansible_host: Jinja templates",
}


def test_corpus_is_real_and_varied() -> None:
    sources = [path.read_text(encoding="utf-8").splitlines()[0] for path in FILES]
    assert all(line.startswith("# Source: https://github.com/") for line in sources)
    repos = {line.split("/")[3] + "/" + line.split("/")[4] for line in sources}
    assert len(FILES) >= 25
    assert len(repos) >= 15


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], dict[str, Any]]:
    """Ansible's reading of a file, computed once per file and shared by the tests."""
    scratch = tmp_path_factory.mktemp("ansible")
    views = ansible_views(FILES, scratch)

    def view(path: Path) -> dict[str, Any]:
        return views[path]

    return view


def _dcctl_view(path: Path, expected: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """dcctl's reading of `path`, shaped like the oracle's, and any errors raised on the way."""
    from dcctl.inventory import load_inventory, select_hosts

    inventory = load_inventory(str(path), env={})
    errors: list[str] = []
    patterns: dict[str, list[str] | None] = {}
    for pattern in expected["patterns"]:
        try:
            patterns[pattern] = [host.name for host in select_hosts(inventory, pattern)]
        except Exception as exc:  # report every pattern, not only the first that fails
            if not expected["patterns"][pattern]:
                patterns[pattern] = []  # dcctl refuses a limit that selects nothing; fine
                continue
            errors.append(f"pattern {pattern!r}: {type(exc).__name__}: {exc}")
            patterns[pattern] = None  # reported in errors
    view = {
        "all": [host.name for host in inventory.hosts],
        "groups": {name: sorted(members) for name, members in inventory.groups.items()},
        "patterns": patterns,
        "unusable": {host.name: host.unusable for host in inventory.hosts},
        "hosts": {
            host.name: {
                "address": host.address,
                "port": host.port,
                "user": host.user,
                "key_file": host.key_file,
            }
            for host in inventory.hosts
        },
    }
    return view, errors


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_dcctl_resolves_like_ansible(path: Path, oracle: Callable[[Path], dict[str, Any]]) -> None:
    expected = oracle(path)
    try:
        got, problems = _dcctl_view(path, expected)
    except Exception as exc:
        pytest.fail(f"dcctl refused an inventory Ansible accepts: {type(exc).__name__}: {exc}")

    reason = UNREACHABLE_HOSTS.get(path.name)
    unreachable = {name: why for name, why in got["unusable"].items() if why is not None}
    if reason is None:
        assert not unreachable, f"hosts dcctl cannot reach: {unreachable}"
    else:
        assert unreachable, f"every host is usable; take {path.name} off UNREACHABLE_HOSTS"
        assert all(reason in why for why in unreachable.values()), unreachable

    if set(got["all"]) != set(expected["all"]):
        problems.append(
            f"hosts of all: only in dcctl {sorted(set(got['all']) - set(expected['all']))}, "
            f"only in Ansible {sorted(set(expected['all']) - set(got['all']))}"
        )
    for group, members in sorted(expected["groups"].items()):
        mine = got["groups"].get(group)
        if mine is None:
            if members:  # an empty group dcctl drops selects nothing either way
                problems.append(f"group {group!r} missing in dcctl (Ansible: {members})")
        elif set(mine) != set(members):
            problems.append(f"group {group!r}: dcctl {mine} != Ansible {members}")
    for group in sorted(set(got["groups"]) - set(expected["groups"])):
        problems.append(f"group {group!r} exists only in dcctl: {got['groups'][group]}")
    for pattern, members in expected["patterns"].items():
        if got["patterns"][pattern] is None:
            continue  # the error is already reported
        if set(got["patterns"][pattern]) != set(members):
            problems.append(
                f"pattern {pattern!r}: dcctl {got['patterns'][pattern]} != Ansible {members}"
            )
    templated = []
    for name, fields in sorted(expected["hosts"].items()):
        mine = got["hosts"].get(name)
        if mine is None or got["unusable"].get(name):
            continue  # reported under "hosts of all", or a host dcctl will not contact
        for field, value in fields.items():
            if value == JINJA_MARK:
                templated.append(f"{name}.{field}")
                continue
            if field == "key_file" and isinstance(value, str):
                # As ssh reads what Ansible hands it: ~ expanded, relative to where it runs.
                value = os.path.abspath(os.path.expanduser(value))
            if mine[field] != value:
                problems.append(
                    f"host {name!r} {field}: dcctl {mine[field]!r} != Ansible {value!r}"
                )
    assert not problems, "\n".join(
        problems + ([f"(not compared, Jinja: {', '.join(templated)})"] if templated else [])
    )


# The real CLI on every third file: enough to prove the API oracle reads files as the CLI does,
# at a third of the cost (each `ansible-inventory` start imports all of ansible-core).
CLI_FILES = FILES[::3]


@pytest.mark.parametrize("path", CLI_FILES, ids=[path.name for path in CLI_FILES])
def test_ansible_inventory_cli_agrees_with_api(
    path: Path, oracle: Callable[[Path], dict[str, Any]], tmp_path: Path
) -> None:
    """The oracle is Ansible's API; prove it says what the real `ansible-inventory` CLI says."""
    listed = {group: hosts for group, hosts in cli_groups(path, tmp_path).items() if hosts}
    api = {group: hosts for group, hosts in oracle(path)["groups"].items() if hosts}
    assert listed == api


def test_ini_with_group_vars_flattened_by_ansible_inventory_resolves_the_same(
    tmp_path: Path,
) -> None:
    """What README tells owners of INI inventories, group_vars/ and host_vars/: dcctl reads
    only one YAML file, and `ansible-inventory --list --yaml` writes any of them as one."""
    from dcctl.inventory import load_inventory

    source = tmp_path / "site"
    (source / "group_vars").mkdir(parents=True)
    (source / "host_vars").mkdir()
    ini = source / "hosts.ini"
    ini.write_text(
        "[gpus]\ngpu[01:03].rack ansible_host=10.0.0.1\nlogin ansible_port=2222\n"
        "[gpus:vars]\nansible_python_interpreter=/usr/bin/python3\n"
        "[rack:children]\ngpus\n"
    )
    (source / "group_vars" / "rack.yml").write_text("ansible_user: admin\n")
    (source / "host_vars" / "gpu02.rack.yml").write_text("ansible_host: 10.0.0.2\n")
    flat = tmp_path / "flat.yaml"
    flat.write_text(flattened_yaml(ini, tmp_path / "scratch"))

    expected = ansible_view(ini, tmp_path / "scratch", plugins="ini")
    inventory = load_inventory(str(flat), env={})
    assert {h.name: h.groups for h in inventory.hosts}.keys() == set(expected["all"])
    for host in inventory.hosts:
        want = expected["hosts"][host.name]
        assert (host.address, host.port, host.user) == (want["address"], want["port"], want["user"])
        assert host.python == "/usr/bin/python3"
    assert inventory.host("gpu02.rack").address == "10.0.0.2"
    assert inventory.host("login").user == "admin"
