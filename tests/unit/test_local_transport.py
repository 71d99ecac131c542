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
