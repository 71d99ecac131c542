"""Node progress over real SSH: it reaches the controller while the task still runs, from the
transport, from a fleet run, and from hosts dealt to SSH worker processes."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from processes import children_running
from sshlab import NODE_PYTHON, Sshd, SshLab, lab_host

from dcctl.fleet.executor import Fleet
from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.inventory.model import Host
from dcctl.node.payload import (
    PAYLOAD_END,
    PAYLOAD_START,
    format_payload,
    format_progress,
)
from dcctl.transport.base import CommandResult
from dcctl.transport.ssh import SshContext, SshOptions, SshTransport

WAIT_S = 60.0
WORKER_MARK = "dcctl.fleet.worker"

# Prints a progress line, waits for the file named by its first argument (the test creates it
# once that line has reached it), then prints a second line in two writes and a payload.
NODE_SCRIPT = f"""\
import os, sys, time
go = sys.argv[1]
sys.stdout.write({format_progress({"bench": "soak", "step": 1, "of": 2})!r})
sys.stdout.flush()
give_up_at = time.monotonic() + {WAIT_S}
while not os.path.exists(go) and time.monotonic() < give_up_at:
    time.sleep(0.01)
second = {format_progress({"bench": "soak", "step": 2, "of": 2})!r}
sys.stdout.write(second[:12])
sys.stdout.flush()
sys.stdout.write(second[12:] + {format_payload({"ok": True})!r})
"""

# The same as a node "interpreter" for fleet runs: the runtime's install goes to the real one,
# and the file to wait for is $FAKE_GO.
FAKE_NODE = f"""#!{NODE_PYTHON}
import json, os, sys, time
if sys.argv[1:3] == ["-S", "-c"]:
    os.execv({NODE_PYTHON!r}, [{NODE_PYTHON!r}, *sys.argv[1:]])
sys.stdout.write({format_progress({"bench": "soak", "step": 1})!r})
sys.stdout.flush()
give_up_at = time.monotonic() + {WAIT_S}
while not os.path.exists(os.environ["FAKE_GO"]) and time.monotonic() < give_up_at:
    time.sleep(0.01)
payload = json.dumps({{"host": os.environ["FAKE_NAME"]}})
sys.stdout.write({PAYLOAD_START!r} + payload + {PAYLOAD_END!r} + "\\n")
"""


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ~/.ssh, known_hosts or ssh-agent of this machine reaches the run (workers included)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def context(tmp_path: Path, lab_known_hosts: Path, isolated_home: None) -> Iterator[SshContext]:
    options = SshOptions(
        trusted_keys_file=lab_known_hosts, user_known_hosts=(), global_known_hosts=()
    )
    context = SshContext(options)
    try:
        yield context
    finally:
        context.close()


def as_host(vars_: dict[str, Any], **extra: Any) -> Host:
    return Host(
        name=vars_["name"],
        address=vars_["host"],
        port=vars_["port"],
        user=vars_["user"],
        key_file=vars_["key_file"],
        **extra,
    )


def test_progress_arrives_over_ssh_before_the_task_ends(
    tmp_path: Path, ssh_lab: SshLab, healthy_sshd: Sshd, context: SshContext
) -> None:
    host = as_host(lab_host(ssh_lab, healthy_sshd, "node1", healthy_sshd.addresses[0]))
    transport = SshTransport(host, context)
    go = tmp_path / "go"
    arrived: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    results: list[CommandResult] = []

    def run() -> None:
        argv = [NODE_PYTHON, "-c", NODE_SCRIPT, str(go)]
        results.append(transport.run(argv, time.monotonic() + WAIT_S, on_progress=arrived.put))

    command = threading.Thread(target=run, daemon=True)
    command.start()
    try:
        assert arrived.get(timeout=WAIT_S) == {"bench": "soak", "step": 1, "of": 2}
        assert command.is_alive()  # it waits for `go`, which only now exists
        go.touch()
        assert arrived.get(timeout=WAIT_S) == {"bench": "soak", "step": 2, "of": 2}
        command.join(WAIT_S)
    finally:
        go.touch()
        transport.close()
    (result,) = results
    assert result.exit_code == 0
    assert result.stdout.endswith(format_payload({"ok": True}))


def fleet_hosts(tmp_path: Path, ssh_lab: SshLab, healthy_sshd: Sshd, count: int) -> list[Host]:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_NODE)
    script.chmod(0o755)
    hosts = []
    for index, address in enumerate(healthy_sshd.addresses[:count], start=1):
        name = f"node{index}"
        env = {
            "XDG_CACHE_HOME": str(tmp_path / "node-cache"),
            "FAKE_GO": str(tmp_path / f"go-{name}"),
            "FAKE_NAME": name,
        }
        hosts.append(
            as_host(lab_host(ssh_lab, healthy_sshd, name, address), python=str(script), env=env)
        )
    return hosts


def run_fleet(
    tmp_path: Path, hosts: list[Host], lab_known_hosts: Path, workers: int
) -> tuple[list[tuple[str, str, Any]], set[int]]:
    """The events of one fleet run, in the order the caller saw them, and how many worker
    processes ran while progress arrived. A host's task may end only once its first progress
    has reached the caller."""
    events: list[tuple[str, str, Any]] = []
    workers_seen: set[int] = set()

    def on_progress(name: str, progress: dict[str, Any]) -> None:
        assert threading.current_thread() is threading.main_thread()
        workers_seen.add(len(children_running(os.getpid(), WORKER_MARK)))
        events.append(("progress", name, progress["step"]))
        (tmp_path / f"go-{name}").touch()

    def on_outcome(outcome: HostOutcome) -> None:
        events.append(("landed", outcome.host.name, outcome.error or outcome.payload))

    options = FleetOptions(trusted_keys_file=lab_known_hosts, workers=workers, connect_timeout_s=10)
    try:
        with Fleet(options) as fleet:
            fleet.run(hosts, "soak", lambda _h: {}, WAIT_S, on_outcome, on_progress)
    finally:
        for host in hosts:  # a failed run must not leave node tasks waiting
            (tmp_path / f"go-{host.name}").touch()
    return events, workers_seen


@pytest.mark.parametrize("workers", [1, 2])
def test_a_fleet_run_shows_each_hosts_progress_before_it_lands(
    tmp_path: Path,
    ssh_lab: SshLab,
    healthy_sshd: Sshd,
    lab_known_hosts: Path,
    isolated_home: None,
    workers: int,
) -> None:
    hosts = fleet_hosts(tmp_path, ssh_lab, healthy_sshd, count=2)
    events, workers_seen = run_fleet(tmp_path, hosts, lab_known_hosts, workers)
    # Through worker processes when asked for (--workers 2), else in this one.
    assert workers_seen == {0 if workers == 1 else workers}
    for host in hosts:
        mine = [event for event in events if event[1] == host.name]
        assert mine == [
            ("progress", host.name, 1), ("landed", host.name, {"host": host.name})
        ], events  # fmt: skip
