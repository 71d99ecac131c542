"""Progress lines read from a command's stdout as they arrive: whole lines only, however the
stream is cut, bounded in memory; and through the local transport before the command ends."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcctl.node.payload import PROGRESS_END, PROGRESS_START, format_payload, format_progress
from dcctl.transport.base import PROGRESS_LINE_MAX_BYTES, CommandResult, ProgressLines
from dcctl.transport.local import LocalTransport

WAIT_S = 30.0


def _fed(data: bytes, cut_every: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    lines = ProgressLines(got.append)
    for start in range(0, len(data), cut_every):
        lines.feed(data[start : start + cut_every])
    return got


def _oversized() -> bytes:
    """A well-formed progress line just past the limit."""
    line = format_progress({"pad": "x" * PROGRESS_LINE_MAX_BYTES}).encode()
    assert len(line) > PROGRESS_LINE_MAX_BYTES
    return line


STREAM = (
    b"a login banner\n"
    + format_progress({"step": 1, "of": 3}).encode()
    + b"noise " + format_progress({"step": 2, "of": 3}).encode()
    + _oversized()
    + f"{PROGRESS_START}{{not json{PROGRESS_END}\n".encode()
    + f"{PROGRESS_START}[1, 2]{PROGRESS_END}\n".encode()
    + format_progress({"step": 3, "of": 3}).encode()
    + format_payload({"ok": True}).encode()
)  # fmt: skip


@pytest.mark.parametrize("cut_every", [1, 2, 7, 4096, 65536, len(STREAM)])
def test_every_whole_progress_line_is_found_however_the_stream_is_cut(cut_every: int) -> None:
    # The oversized line, the malformed one and the non-object are dropped; nothing else is.
    assert _fed(STREAM, cut_every) == [
        {"step": 1, "of": 3}, {"step": 2, "of": 3}, {"step": 3, "of": 3}
    ]  # fmt: skip


def test_a_line_is_passed_on_only_once_its_newline_arrives() -> None:
    got: list[dict[str, Any]] = []
    lines = ProgressLines(got.append)
    line = format_progress({"step": 1}).encode()
    lines.feed(line[:-1])
    assert got == []
    lines.feed(b"\n")
    assert got == [{"step": 1}]


def test_an_endless_line_is_not_held_and_the_next_line_is_read() -> None:
    got: list[dict[str, Any]] = []
    lines = ProgressLines(got.append)
    lines.feed(PROGRESS_START.encode())
    for _ in range(1000):  # 64 MiB without a newline
        lines.feed(b"x" * 65536)
        assert len(lines._partial) <= PROGRESS_LINE_MAX_BYTES
    lines.feed(PROGRESS_END.encode() + b"\n" + format_progress({"step": 1}).encode())
    assert got == [{"step": 1}]


# --- through the local transport, driven by the test -------------------------------------------

# Prints what the test sends through a FIFO, one hex-encoded write per line, until an empty one.
_PRINTER = """\
import sys
with open(sys.argv[1], "rb") as feed:
    for line in feed:
        data = bytes.fromhex(line.decode().strip())
        if not data:
            break
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
"""


class _Feed:
    """The writing end of the printer's FIFO."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def send(self, data: bytes) -> None:
        message = data.hex().encode() + b"\n"
        while message:
            message = message[os.write(self._fd, message) :]


@contextlib.contextmanager
def _feed(fifo: Path) -> Iterator[_Feed]:
    """Opened once the printer has opened its end; never blocks past WAIT_S if it does not."""
    give_up_at = time.monotonic() + WAIT_S
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as exc:  # ENXIO: no reader yet
            if exc.errno != errno.ENXIO or time.monotonic() > give_up_at:
                raise
            time.sleep(0.01)
    os.set_blocking(fd, True)
    try:
        yield _Feed(fd)
    finally:
        os.close(fd)


def test_local_transport_passes_progress_on_before_the_command_ends(tmp_path: Path) -> None:
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    arrived: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    results: list[CommandResult] = []

    def run() -> None:
        results.append(
            LocalTransport().run(
                [sys.executable, "-c", _PRINTER, str(fifo)],
                deadline=time.monotonic() + 120,
                on_progress=arrived.put,
            )
        )

    command = threading.Thread(target=run, daemon=True)
    command.start()
    with _feed(fifo) as feed:
        feed.send(b"banner\n" + format_progress({"step": 1}).encode())
        assert arrived.get(timeout=WAIT_S) == {"step": 1}
        assert command.is_alive()
        second = format_progress({"step": 2}).encode()
        feed.send(second[:10])
        feed.send(second[10:])
        assert arrived.get(timeout=WAIT_S) == {"step": 2}
        feed.send(_oversized())
        feed.send(format_progress({"step": 3}).encode())
        # In order: had the oversized line been passed on, it would come first.
        assert arrived.get(timeout=WAIT_S) == {"step": 3}
        assert command.is_alive()
        feed.send(format_payload({"ok": True}).encode())
        feed.send(b"")
    command.join(WAIT_S)
    assert not command.is_alive()
    (result,) = results
    assert result.exit_code == 0
    # stdout is kept whole, progress lines and all, for the payload.
    assert _oversized().decode() in result.stdout
    assert result.stdout.endswith(format_payload({"ok": True}))
    assert arrived.empty()


def test_local_transport_without_a_listener_reads_as_before() -> None:
    text = format_progress({"step": 1}) + format_payload({"ok": True})
    result = LocalTransport().run(
        [sys.executable, "-c", f"print({json.dumps(text)}, end='')"], time.monotonic() + 30
    )
    assert (result.exit_code, result.stdout) == (0, text)
