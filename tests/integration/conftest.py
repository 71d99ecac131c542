"""Fixtures for integration tests against real OpenSSH servers on loopback (see sshlab.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm_lab import SlurmLab, slurm_missing
from sshlab import (
    SSHD_BIN,
    SilentListener,
    Sshd,
    SshLab,
    endpoint_host,
    lab_host,
    refused_endpoint,
    sshd_available,
    write_known_hosts,
)

HEALTHY_ADDRESSES = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/integration gets the `integration` marker."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshLab]:
    if not sshd_available():
        pytest.fail(
            f"{SSHD_BIN} is missing: integration tests need a real OpenSSH server. "
            "Install it with `apt-get install openssh-server`.",
            pytrace=False,
        )
    lab = SshLab(tmp_path_factory.mktemp("sshlab"))
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="session")
def healthy_sshd(ssh_lab: SshLab) -> Sshd:
    """One sshd listening on 127.0.0.2, 127.0.0.3 and 127.0.0.4 (same free port)."""
    return ssh_lab.start_sshd(HEALTHY_ADDRESSES)


@pytest.fixture(scope="session")
def lab_known_hosts(ssh_lab: SshLab, healthy_sshd: Sshd) -> Path:
    """known_hosts with healthy_sshd's host key for each of its addresses."""
    return write_known_hosts(ssh_lab.root / "known_hosts", [healthy_sshd])


@pytest.fixture
def healthy_hosts(ssh_lab: SshLab, healthy_sshd: Sshd) -> list[dict[str, Any]]:
    """node1..node3 on healthy_sshd's addresses, as inventory host dicts."""
    return [
        lab_host(ssh_lab, healthy_sshd, f"node{i}", address)
        for i, address in enumerate(healthy_sshd.addresses, start=1)
    ]


@pytest.fixture
def dead_hosts(ssh_lab: SshLab) -> Iterator[list[dict[str, Any]]]:
    """ "refused" (nothing listens) and "silent" (accepts, never speaks), as inventory hosts."""
    refused_address, refused_port = refused_endpoint("127.0.0.1")
    with SilentListener("127.0.0.1") as silent:
        yield [
            endpoint_host(ssh_lab, "refused", refused_address, refused_port),
            endpoint_host(ssh_lab, "silent", silent.address, silent.port),
        ]


@pytest.fixture
def state_dir(tmp_path: Path, lab_known_hosts: Path) -> Path:
    """A fresh state dir whose trusted known_hosts holds the healthy lab hosts' keys."""
    state = tmp_path / "state"
    state.mkdir()
    shutil.copy(lab_known_hosts, state / "known_hosts")
    return state


# The Slurm nodes of the lab: n1..n8 for the drain/resume tests, audit* for `dcctl audit`.
SLURM_LAB_NODES = [*(f"n{i}" for i in range(1, 9)), "audit1", "audit2", "audit3"]


@pytest.fixture(scope="session")
def slurm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmLab]:
    """A real slurmctld (with its own munged) on this machine, shared by the session."""
    missing = slurm_missing()
    if missing is not None:
        pytest.skip(missing)
    lab = SlurmLab(tmp_path_factory.mktemp("slurm"), SLURM_LAB_NODES)
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
