"""Typed per-host connection settings, as resolved from an inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Connection = Literal["ssh", "local"]

DEFAULT_SCRATCH_DIR = "/var/tmp/dcctl"
DEFAULT_PYTHON = "python3"
# Where `dcctl provision` makes the benchmarks' venv when the inventory names no other.
DEFAULT_RUNTIME_VENV = "/opt/dcctl/venv"


@dataclass(frozen=True)
class Host:
    """One inventory host with every variable resolved (host > child group > parent > all).

    `address` is what the transport connects to (`host`/`ansible_host`, else the name);
    `port`, `user` and `key_file` left as None fall back to ~/.ssh/config, then to SSH defaults.

    `unusable` says why dcctl cannot reach the host at all (`file:line: key: problem`): a value
    it must use is a Jinja template, or its connection is an Ansible plugin dcctl lacks. Such a
    host stays in the inventory, as in Ansible, so groups and `--limit` resolve the same; a run
    reports it as an `inventory` error and contacts it never.

    `runtime_venv` .. `provision_python` are read by `dcctl provision` only, so a template in
    one of them (a role variable of the same name) spoils only that command for the host:
    `provision_unusable`, not `unusable`. `python_set` says whether the inventory chose the
    interpreter (`python`/`ansible_python_interpreter` at any level): if not, bench and
    certify use the one `dcctl provision` recorded for the host. `provision_python` (the
    interpreter that makes the venv) is not such a choice and leaves `python_set` alone.
    """

    name: str
    address: str
    connection: Connection = "ssh"
    port: int | None = None
    user: str | None = None
    key_file: str | None = None
    python: str = DEFAULT_PYTHON
    jump: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    fabric_address: str | None = None
    scratch_dir: str = DEFAULT_SCRATCH_DIR
    expect: dict[str, Any] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    unusable: str | None = None
    runtime_venv: str = DEFAULT_RUNTIME_VENV
    torch_spec: str | None = None
    pip_index_url: str | None = None
    pip_extra_args: tuple[str, ...] = ()
    wheelhouse: str | None = None
    provision_python: str | None = None
    python_set: bool = False
    provision_unusable: str | None = None

    @property
    def rendezvous_address(self) -> str:
        return self.fabric_address or self.address


@dataclass(frozen=True)
class Inventory:
    """Resolved inventory: hosts in file order, group name -> member host names, and the
    warnings loading it gave (`file:line: key: problem`), which the loader has printed."""

    source: str
    hosts: tuple[Host, ...]
    groups: dict[str, tuple[str, ...]]
    warnings: tuple[str, ...] = ()
    # What Ansible's host order within a group is made of: the hosts each group lists itself
    # and its child groups, each in the order first listed (for `--limit 'rack1[0:3]'`).
    group_hosts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_children: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The file's text as read, which a run keeps as what it used (None: the built-in one).
    text: str | None = field(default=None, repr=False, compare=False)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)
