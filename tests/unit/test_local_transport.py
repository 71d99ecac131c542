"""The local transport: output, exit codes, deadlines that kill the whole process tree."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from dcctl.transport.base import HostError
from dcctl.transport.local import LocalTransport


def test_runs_argv_without_a_shell() -> None:
    result = LocalTransport().run(["echo", "$(x)", ";ls"], deadline=time.monotonic() + 10)
    assert (result.exit_code, result.stdout, result.timed_out) == (0, "$(x) ;ls\n", False)


def test_passes_stdin_and_exit_code() -> None:
    result = LocalTransport().run(
        ["sh", "-c", "cat; exit 3"], deadline=time.monotonic() + 10, stdin=b"data"
    )
    assert (result.exit_code, result.stdout) == (3, "data")


def test_deadline_kills_the_process_tree(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    result = LocalTransport().run(
        ["sh", "-c", f"sleep 300 & echo $! > {pid_file}; wait"],
        deadline=time.monotonic() + 1,
    )
    assert result.timed_out
    child = int(pid_file.read_text())
    # SIGKILL lands asynchronously: give the kernel a moment to turn the child into a zombie.
    give_up_at = time.monotonic() + 5
    while _alive(child) and time.monotonic() < give_up_at:
        time.sleep(0.02)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_cancel_interrupts_a_running_command() -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    with pytest.raises(HostError) as error:
        LocalTransport(cancel).run(["sleep", "300"], deadline=time.monotonic() + 60)
    assert error.value.kind == "interrupted"


def test_missing_program_is_a_runtime_error() -> None:
    with pytest.raises(HostError) as error:
        LocalTransport().run(["/nonexistent/python"], deadline=time.monotonic() + 5)
    assert error.value.kind == "runtime"


def test_without_input_stdin_stays_open_for_the_command() -> None:
    # A closed stdin is readable (EOF) at once; an open, silent one is not.
    probe = "import select, sys; r, _, _ = select.select([sys.stdin], [], [], 1); print(bool(r))"
    open_result = LocalTransport().run([sys.executable, "-c", probe], time.monotonic() + 10)
    closed_result = LocalTransport().run(
        [sys.executable, "-c", probe], time.monotonic() + 10, stdin=b""
    )
    assert (open_result.stdout, closed_result.stdout) == ("False\n", "True\n")


def test_large_output_is_not_lost() -> None:
    result = LocalTransport().run(
        ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\\\0' x"], deadline=time.monotonic() + 20
    )
    assert len(result.stdout) == 3_000_000


def test_a_flood_of_output_keeps_only_its_tail() -> None:
    from dcctl.transport.base import STDERR_KEPT_BYTES, STDOUT_KEPT_BYTES

    flood = STDOUT_KEPT_BYTES * 2
    script = (
        f"head -c {flood} /dev/zero | tr '\\0' x; echo; echo last-line; "
        f"head -c {STDERR_KEPT_BYTES * 4} /dev/zero | tr '\\0' e >&2; echo err-end >&2"
    )
    result = LocalTransport().run(["sh", "-c", script], deadline=time.monotonic() + 60)
    assert result.exit_code == 0
    assert len(result.stdout) == STDOUT_KEPT_BYTES
    assert result.stdout.endswith("x\nlast-line\n")
    assert len(result.stderr) == STDERR_KEPT_BYTES
    assert result.stderr.endswith("eeeerr-end\n")


def test_tail_buffer_keeps_the_last_bytes_across_chunk_boundaries() -> None:
    from dcctl.transport.base import TailBuffer

    buffer = TailBuffer(10)
    for chunk in (b"abc", b"defgh", b"ijklmnop", b"q"):
        buffer.add(chunk)
    assert buffer.text() == "hijklmnopq"
    small = TailBuffer(100)
    small.add(b"payload")
    assert small.text() == "payload"
