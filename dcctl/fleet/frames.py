"""The messages between the controller and its SSH worker processes, as length-prefixed frames.

Pickled: both ends are this program, the worker started by the controller, over private pipes.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import IO, Any

from dcctl.fleet.outcome import FleetOptions, HostOutcome
from dcctl.inventory.model import Host

_HEADER = struct.Struct(">Q")


@dataclass(frozen=True)
class WorkerInit:
    options: FleetOptions


@dataclass(frozen=True)
class StepRequest:
    step: int
    task: str
    hosts: list[tuple[Host, dict[str, Any]]]
    timeout_s: float
    # Whether the controller shows node progress: if not, the worker sends none.
    progress: bool = False


@dataclass(frozen=True)
class Landed:
    step: int
    outcome: HostOutcome


@dataclass(frozen=True)
class NodeProgress:
    """The latest progress line of a host still running its task; sent at most a few times a
    second per host (fleet/progress.py), and never after the host's Landed."""

    step: int
    host_name: str
    progress: dict[str, Any]


@dataclass(frozen=True)
class StepDone:
    step: int
    interrupted: bool


@dataclass(frozen=True)
class WorkerExited:
    """Posted by the controller's reader, never sent: a worker's frames ended, and why."""

    detail: str


def encode_frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def write_frame(stream: IO[bytes], message: object) -> None:
    write_all(stream, encode_frame(message))


def write_all(stream: IO[bytes], data: bytes) -> None:
    """All of `data`, then flushed: a signal landing in a blocked pipe write can cut it short,
    and a frame cut short would desynchronize every frame after it."""
    unsent = memoryview(data)
    while unsent:
        unsent = unsent[stream.write(unsent) :]
    stream.flush()


def read_frame(stream: IO[bytes]) -> object | None:
    """The next message, or None at a clean end of stream."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    data = _read_exactly(stream, size)
    if data is None:
        raise EOFError("stream ended inside a frame")
    message: object = pickle.loads(data)  # our own worker: see the module docstring
    return message


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            if parts:
                raise EOFError("stream ended inside a frame")
            return None
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
