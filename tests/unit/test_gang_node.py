"""The node side of a job across nodes, without torch: what the preflight answers (ranks, the
rendezvous port) and which `gang` requests are refused before anything starts."""

from __future__ import annotations

import importlib.util
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dcctl.node.bench.gang import CPU_RANKS, gang_task, preflight_task
from dcctl.node.facts import TaskParamsError

# The preflight asks for torch first: the port is only looked at where torch is installed.
HAS_TORCH = importlib.util.find_spec("torch") is not None
with_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed here")


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on, as a stale job or another service would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_a_node_without_torch_is_refused_naming_the_install_command() -> None:
    answer = preflight_task({"leader": True, "port": None, "nproc": None})
    assert answer["problem"] == (
        f"torch is not installed for {sys.executable}; install it: {sys.executable} -m pip "
        "install torch (the CPU build, see https://pytorch.org/get-started/locally/)"
    )
    assert answer["ports"] == []


@with_torch
def test_the_first_node_offers_distinct_free_ports_and_the_others_none() -> None:
    leader = preflight_task({"leader": True, "port": None, "nproc": None})
    other = preflight_task({"leader": False, "port": None, "nproc": None})
    assert leader["problem"] is None, leader["problem"]
    assert len(set(leader["ports"])) == len(leader["ports"]) > 1
    assert other["ports"] == []
    # No GPU here: gloo ranks.
    assert (leader["device"], leader["nproc"]) == ("cpu", CPU_RANKS)


@with_torch
def test_a_rendezvous_port_in_use_is_refused_naming_it(held_port: int) -> None:
    answer = preflight_task({"leader": True, "port": held_port, "nproc": 2})
    assert answer["problem"] is not None
    assert f"rendezvous port {held_port} cannot be used on this node" in answer["problem"]
    assert answer["ports"] == []


GOOD: dict[str, Any] = {
    "worker": "allreduce", "nnodes": 2, "node_rank": 1, "nproc": 2,
    "master_addr": "127.0.0.1", "master_port": 29500, "join_timeout_s": 30, "budget_s": 60,
    "env": {}, "params": {"device": "cpu"},
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"worker": "mlp"}, "worker must be one of"),
        ({"node_rank": 2}, "node_rank 2 is not below nnodes 2"),
        ({"master_port": 0}, "master_port must be an integer >= 1"),
        ({"budget_s": True}, "budget_s must be a positive number of seconds"),
        ({"env": {"A": 1}}, "env must map names to strings"),
        ({"params": {"device": "cpu", "dtype": "int8"}}, "allreduce: dtype must be one of"),
    ],
)
def test_a_bad_gang_request_is_refused_before_anything_starts(
    change: dict[str, Any], named: str
) -> None:
    with pytest.raises(TaskParamsError, match=named):
        gang_task({**GOOD, **change})
