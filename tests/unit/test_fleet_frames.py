"""What crosses between the controller and its SSH workers, and how many workers there are."""

from __future__ import annotations

import io

import pytest

from dcctl.fleet.frames import Landed, StepRequest, read_frame, write_frame
from dcctl.fleet.outcome import HostOutcome
from dcctl.fleet.pool import HOSTS_PER_WORKER, worker_count
from dcctl.inventory.model import Host
from dcctl.transport.base import HostError


def test_frames_round_trip_outcomes_with_their_errors() -> None:
    host = Host(name="gpu001", address="10.0.0.1", env={"A": "b"})
    outcomes = [
        Landed(3, HostOutcome(host, {"kernel": "6.8"}, None, 1.25)),
        Landed(3, HostOutcome(host, None, HostError("timeout", "no SSH banner in 10 s"), 10.0)),
    ]
    request = StepRequest(3, "facts", [(host, {"scratch_dir": "/x"})], 60.0)
    stream = io.BytesIO()
    for message in [*outcomes, request]:
        write_frame(stream, message)
    stream.seek(0)
    received = [read_frame(stream) for _ in range(3)]
    assert received[0] == outcomes[0]
    assert received[2] == request
    assert isinstance(received[1], Landed)
    error = received[1].outcome.error
    assert isinstance(error, HostError)
    assert (error.kind, error.message) == ("timeout", "no SSH banner in 10 s")
    assert read_frame(stream) is None


def test_a_frame_cut_short_is_an_error_not_a_message() -> None:
    stream = io.BytesIO()
    write_frame(stream, Landed(1, HostOutcome(Host(name="a", address="a"), {}, None, 0.0)))
    torn = io.BytesIO(stream.getvalue()[:-3])
    with pytest.raises(EOFError):
        read_frame(torn)


@pytest.mark.parametrize(
    ("requested", "ssh_hosts", "cpus", "expected"),
    [
        (0, 16, 32, 1),  # a rack: one process is plenty
        (0, HOSTS_PER_WORKER * 2, 32, 2),
        (0, 1000, 32, 7),
        (0, 1000, 2, 2),  # never more than the CPUs
        (0, 100_000, 256, 16),
        (4, 3, 32, 3),  # never more workers than hosts
        (1, 1000, 32, 1),
    ],
)
def test_worker_count(requested: int, ssh_hosts: int, cpus: int, expected: int) -> None:
    assert worker_count(requested, ssh_hosts, cpus) == expected


class _ShortWrites(io.BytesIO):
    """A pipe whose writes a signal keeps cutting short: at most 7 bytes go out per call."""

    def write(self, data: object) -> int:
        return super().write(bytes(memoryview(data))[:7])  # type: ignore[arg-type]


def test_a_frame_cut_short_by_a_signal_is_finished_before_the_next() -> None:
    host = Host(name="gpu001", address="10.0.0.1")
    stream = _ShortWrites()
    request = StepRequest(1, "facts", [(host, {"scratch_dir": "/x"})], 60.0)
    write_frame(stream, request)
    write_frame(stream, request)
    stream.seek(0)
    assert [read_frame(stream), read_frame(stream), read_frame(stream)] == [request, request, None]
