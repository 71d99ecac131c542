"""Ansible itself as a test oracle for inventory semantics.

`ansible_view(path)` runs ansible-core's own InventoryManager in one subprocess (isolated HOME,
temp dir and config, only the `yaml` inventory plugin) and returns what Ansible makes of the file:
the hosts of `all` and of every group, the hosts a few patterns select, and each host's address,
port, user and private key file as Ansible's ssh connection would read them (raw values, not
templated).
`cli_groups(path)` runs the real `ansible-inventory --list` and returns group -> host names.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

JINJA_MARK = "<jinja>"
"""Stands for a host field whose raw value is a Jinja template: Ansible would template it."""

_ORACLE = r"""
import json, re, sys
from ansible.parsing.dataloader import DataLoader
from ansible.inventory.manager import InventoryManager
from ansible.vars.manager import VariableManager

def view(path):
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[path])
    vm = VariableManager(loader=loader, inventory=inv)

    def names(pattern):
        return [h.name for h in inv.get_hosts(pattern)]

    groups = {g: sorted(hs) for g, hs in inv.get_groups_dict().items()}
    real = sorted(g for g in groups if g not in ("all", "ungrouped") and groups[g])
    patterns = {}
    pair = None
    for i, a in enumerate(real):
        for b in real[i + 1:]:
            common = set(groups[a]) & set(groups[b])
            # prefer two groups that overlap without one containing the other
            if common and set(groups[a]) != common and set(groups[b]) != common:
                pair = (a, b)
                break
        if pair:
            break
    if pair is None:
        for i, a in enumerate(real):
            for b in real[i + 1:]:
                if set(groups[a]) & set(groups[b]):
                    pair = (a, b)
                    break
            if pair:
                break
    if pair:
        patterns["%s:&%s" % pair] = names("%s:&%s" % pair)
    if real:
        g = real[0]
        partial = [x for x in real if len(groups[x]) < len(groups["all"])]
        if partial:  # a group that leaves some hosts out, so the negation selects something
            n = min(partial, key=lambda x: (len(groups[x]), x))
            patterns["all:!%s" % n] = names("all:!%s" % n)
        patterns["%s[0]" % g] = names("%s[0]" % g)
        patterns["%s[0:1]" % g] = names("%s[0:1]" % g)
        if len(real) > 1:
            patterns["%s,%s" % (real[0], real[-1])] = names("%s,%s" % (real[0], real[-1]))
    all_hosts = names("all")
    if all_hosts:
        first = all_hosts[0]
        regex = "^" + re.escape(first[: max(1, len(first) // 2)])
        patterns["~" + regex] = names("~" + regex)

    def last_set(hv, keys):
        value = None
        for k in keys:  # Ansible's connection options: the later variable name wins
            if k in hv and hv[k] is not None:
                value = hv[k]
        return value

    def raw(value):
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            return "<jinja>"
        return None if value is None else str(value) if not isinstance(value, (int, str)) else value

    hosts = {}
    for h in inv.get_hosts("all"):
        hv = vm.get_vars(host=h, include_hostvars=False)
        address = raw(last_set(hv, ["ansible_host", "ansible_ssh_host"]))
        port = raw(last_set(hv, ["ansible_port", "ansible_ssh_port"]))
        if port not in (None, "<jinja>"):
            try:
                port = int(port)
            except ValueError:
                pass
        hosts[h.name] = {
            "address": (
                h.name if address is None else address if address == "<jinja>" else str(address)
            ),
            "port": port,
            "user": raw(last_set(hv, ["ansible_user", "ansible_ssh_user"])),
            "key_file": raw(
                last_set(hv, ["ansible_private_key_file", "ansible_ssh_private_key_file"])
            ),
        }
    return {"all": all_hosts, "groups": groups, "patterns": patterns, "hosts": hosts}

json.dump({path: view(path) for path in sys.argv[1:]}, sys.stdout)
"""


def ansible_available() -> bool:
    try:
        return importlib.util.find_spec("ansible.inventory.manager") is not None
    except (ImportError, ValueError):
        return False


def ansible_env(scratch: Path, plugins: str = "yaml") -> dict[str, str]:
    """An environment where Ansible reads no user config and writes only under `scratch`, and
    reads inventories only with the inventory `plugins` named (comma-separated)."""
    home = scratch / "home"
    tmp = scratch / "tmp"
    home.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    config = scratch / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=str(home),
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_LOCAL_TEMP=str(tmp),
        ANSIBLE_REMOTE_TEMP=str(tmp),
        ANSIBLE_INVENTORY_ENABLED=plugins,
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_DEPRECATION_WARNINGS="false",
        ANSIBLE_GALAXY_DISABLE_GPG_VERIFY="true",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def ansible_view(path: Path, scratch: Path, plugins: str = "yaml") -> dict[str, Any]:
    """What Ansible's own API makes of the inventory at `path` (see the module docstring)."""
    return ansible_views([path], scratch, plugins)[path]


def ansible_views(
    paths: list[Path], scratch: Path, plugins: str = "yaml"
) -> dict[Path, dict[str, Any]]:
    """ansible_view of many files in one interpreter: importing ansible-core costs more than
    reading a file, 62 times over."""
    argv = [sys.executable, "-c", _ORACLE, *(str(path) for path in paths)]
    views = json.loads(_run_ansible(argv, paths[0], scratch, plugins))
    return {path: views[str(path)] for path in paths}


def _run_ansible(argv: list[str], path: Path, scratch: Path, plugins: str = "yaml") -> str:
    """stdout of an Ansible command about `path`, run isolated in `scratch`."""
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=ansible_env(scratch, plugins),
        cwd=scratch,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"Ansible refused {path.name}:\n{done.stderr[-2000:]}")
    return done.stdout


def _ansible_inventory() -> str:
    return shutil.which("ansible-inventory") or str(
        Path(sys.executable).with_name("ansible-inventory")
    )


def flattened_yaml(path: Path, scratch: Path) -> str:
    """`ansible-inventory -i path --list --yaml`: any inventory Ansible reads (INI, with its
    group_vars/ and host_vars/), written out as one YAML inventory."""
    argv = [_ansible_inventory(), "-i", str(path), "--list", "--yaml"]
    return _run_ansible(argv, path, scratch, plugins="ini,yaml")


def cli_groups(path: Path, scratch: Path) -> dict[str, list[str]]:
    """Group -> sorted host names (descendants included) from `ansible-inventory -i path --list`."""
    exe = _ansible_inventory()
    listing = json.loads(_run_ansible([exe, "-i", str(path), "--list"], path, scratch))
    listing.pop("_meta", None)

    def members(group: str, seen: frozenset[str] = frozenset()) -> set[str]:
        entry = listing.get(group, {})
        found = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            if child not in seen:
                found |= members(child, seen | {group})
        return found

    return {group: sorted(members(group)) for group in listing}
