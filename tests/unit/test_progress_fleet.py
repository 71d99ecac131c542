"""Node progress through the fleet: throttled per host, handed to the caller's thread before
the host lands, and passed on by SSH worker processes as frames."""

from __future__ import annotations

import io
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dcctl.fleet.executor import Fleet
from dcctl.fleet.frames import Landed, NodeProgress, StepDone, StepRequest, read_frame, write_frame
from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.fleet.pool import Inbox, WorkerPool
from dcctl.fleet.progress import PROGRESS_INTERVAL_S, ProgressGate
from dcctl.inventory.model import Host
from dcctl.node.payload import PAYLOAD_END, PAYLOAD_START, PROGRESS_END, PROGRESS_START

WAIT_S = 60.0

# A node "interpreter": the runtime's install goes to the real one; a task prints progress,
# then waits for the file $FAKE_GO (the test creates it once that progress has reached it),
# or, with $FAKE_FLOOD_S, prints progress without pause for that long; then a payload.
FAKE_NODE = f"""#!{sys.executable}
import json, os, sys, time
if sys.argv[1:3] == ["-S", "-c"]:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])

def say(start, end, obj):
    sys.stdout.write(start + json.dumps(obj) + end + "\\n")
    sys.stdout.flush()

printed = 0
flood_s = float(os.environ.get("FAKE_FLOOD_S", "0"))
if flood_s:
    stop_at = time.monotonic() + flood_s
    while time.monotonic() < stop_at:
        printed += 1
        say({PROGRESS_START!r}, {PROGRESS_END!r}, {{"bench": "soak", "step": printed}})
else:
    say({PROGRESS_START!r}, {PROGRESS_END!r}, {{"bench": "soak", "step": 1, "of": 2}})
    give_up_at = time.monotonic() + {WAIT_S}
    while not os.path.exists(os.environ["FAKE_GO"]) and time.monotonic() < give_up_at:
        time.sleep(0.01)
    say({PROGRESS_START!r}, {PROGRESS_END!r}, {{"bench": "soak", "step": 2, "of": 2}})
say({PAYLOAD_START!r}, {PAYLOAD_END!r}, {{"printed": printed}})
"""


def fake_node(tmp_path: Path) -> Path:
    script = tmp_path / "fake-python"
    script.write_text(FAKE_NODE)
    script.chmod(0o755)
    return script


def local_host(tmp_path: Path, name: str, **env: str) -> Host:
    return Host(
        name=name,
        address="localhost",
        connection="local",
        python=str(fake_node(tmp_path)),
        env={"XDG_CACHE_HOME": str(tmp_path / "cache"), "FAKE_GO": str(tmp_path / name), **env},
    )


# --- the gate ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_passes_the_latest_line_of_each_host_at_most_once_an_interval() -> None:
    clock = Clock()
    gate = ProgressGate(clock=clock)
    for step in range(1, 1001):
        gate.offer("a", {"step": step})
    gate.offer("b", {"step": 1})
    assert gate.take_due() == [("a", {"step": 1000}), ("b", {"step": 1})]
    gate.offer("a", {"step": 1001})
    clock.now += PROGRESS_INTERVAL_S / 2
    assert gate.take_due() == []  # too soon for "a"
    clock.now += PROGRESS_INTERVAL_S / 2
    # Not lost for having waited: taken once the interval is over, with no new line needed.
    assert gate.take_due() == [("a", {"step": 1001})]
    assert gate.take_due() == []


def test_a_closed_host_shows_no_more_progress() -> None:
    gate = ProgressGate(clock=Clock())
    gate.offer("a", {"step": 1})
    gate.close("a")
    gate.offer("a", {"step": 2})
    assert gate.take_due() == []


def test_progress_frames_round_trip() -> None:
    stream = io.BytesIO()
    message = NodeProgress(2, "gpu001", {"bench": "gemm", "step": 3, "of": 5})
    write_frame(stream, message)
    stream.seek(0)
    assert read_frame(stream) == message


# --- a fleet run -------------------------------------------------------------------------------


def test_progress_reaches_the_callers_thread_before_the_host_lands(tmp_path: Path) -> None:
    hosts = [local_host(tmp_path, f"h{i}") for i in range(3)]
    events: list[tuple[str, str, Any]] = []
    threads: set[threading.Thread] = set()

    def on_progress(name: str, progress: dict[str, Any]) -> None:
        threads.add(threading.current_thread())
        events.append(("progress", name, progress["step"]))
        (tmp_path / name).touch()  # the host's task may finish now

    def on_outcome(outcome: HostOutcome) -> None:
        events.append(("landed", outcome.host.name, outcome.error))

    with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts")) as fleet:
        run = fleet.run(hosts, "soak", lambda _h: {}, WAIT_S, on_outcome, on_progress)
    assert not run.interrupted
    assert threads == {threading.main_thread()}
    for host in hosts:
        mine = [event for event in events if event[1] == host.name]
        # The task cannot end before its first progress has reached the caller.
        assert mine[0] == ("progress", host.name, 1), mine
        assert mine[-1] == ("landed", host.name, None), mine
        assert [kind for kind, *_ in mine].count("landed") == 1


def test_a_host_printing_progress_without_pause_cannot_flood_the_caller(tmp_path: Path) -> None:
    host = local_host(tmp_path, "chatty", FAKE_FLOOD_S="1.5")
    shown: list[int] = []
    payloads: list[dict[str, Any] | None] = []
    began = time.monotonic()
    with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts")) as fleet:
        fleet.run(
            [host],
            "soak",
            lambda _h: {},
            WAIT_S,
            lambda outcome: payloads.append(outcome.payload),
            lambda _name, progress: shown.append(progress["step"]),
        )
    took = time.monotonic() - began
    (payload,) = payloads
    assert payload is not None and payload["printed"] > 1000
    assert 1 <= len(shown) <= took / PROGRESS_INTERVAL_S + 1
    assert shown == sorted(shown)


def test_without_a_listener_no_progress_is_gathered(tmp_path: Path) -> None:
    (tmp_path / "quiet").touch()
    host = local_host(tmp_path, "quiet")
    landed: list[HostOutcome] = []
    with Fleet(FleetOptions(trusted_keys_file=tmp_path / "known_hosts")) as fleet:
        fleet.run([host], "soak", lambda _h: {}, WAIT_S, landed.append)
    assert [outcome.error for outcome in landed] == [None]


# --- through a worker process ------------------------------------------------------------------


def until_step_done(inbox: Inbox) -> list[object]:
    """The messages of one worker up to the end of its step."""
    messages: list[object] = []
    while not messages or not isinstance(messages[-1], StepDone):
        messages.append(inbox.get(timeout=WAIT_S)[1])
    return messages


def test_a_worker_sends_progress_before_the_host_lands(tmp_path: Path) -> None:
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    host = local_host(tmp_path, "w0")
    try:
        worker = pool.worker(0)
        assert worker.send(StepRequest(1, "soak", [(host, {})], WAIT_S, progress=True))
        pid, first = inbox.get(timeout=WAIT_S)
        assert pid == worker.pid
        assert first == NodeProgress(1, "w0", {"bench": "soak", "step": 1, "of": 2})
        (tmp_path / "w0").touch()  # the task may finish now
        rest = until_step_done(inbox)
    finally:
        pool.close()
    landed = [message for message in rest if isinstance(message, Landed)]
    assert [m.outcome.error for m in landed] == [None]
    # Nothing of the host after it landed: its line would show it running again.
    after = rest[rest.index(landed[0]) + 1 :]
    assert not any(isinstance(message, NodeProgress) for message in after)


def test_a_worker_asked_for_no_progress_sends_none(tmp_path: Path) -> None:
    inbox: Inbox = queue.SimpleQueue()
    pool = WorkerPool(1, FleetOptions(trusted_keys_file=tmp_path / "known_hosts"), inbox)
    (tmp_path / "w0").touch()
    host = local_host(tmp_path, "w0")
    try:
        assert pool.worker(0).send(StepRequest(1, "soak", [(host, {})], WAIT_S))
        messages = until_step_done(inbox)
    finally:
        pool.close()
    assert [type(message) for message in messages] == [Landed, StepDone]
    assert isinstance(messages[0], Landed) and messages[0].outcome.payload == {"printed": 0}
