"""SIGTERM (cron's `timeout`, `kill`, systemd) and SIGHUP (a closed terminal) end a real dcctl
run as Ctrl-C does: the partial run kept and printed, node tasks stopped, a documented code.

Each test waits for conditions (files, processes, a full pipe), never for a fixed time.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cli_runner import dcctl_env, load_schema, start_dcctl
from processes import (
    blocked_writing_to_a_pipe,
    children_running,
    pids_with_env,
    process_alive,
    wait_for,
)
from sshlab import write_inventory
from sysroots import hanging_sysroot

SIGNAL_EXITS = {signal.SIGTERM: 143, signal.SIGHUP: 129, signal.SIGINT: 130}
WORKER_MARK = "dcctl.fleet.worker"
# From the signal to the exit: the fleet's grace for hosts still running, plus start-up slack.
ENDS_WITHIN_S = 10


@pytest.fixture(autouse=True)
def _signals_reach_dcctl() -> Iterator[None]:
    """A signal this test process ignores (pytest run under nohup, or in the background), its
    children start with ignored too, and dcctl rightly keeps ignoring it. While a test runs,
    such a signal gets a do-nothing handler here instead, which a child starts without."""
    ignored = [s for s in SIGNAL_EXITS if signal.getsignal(s) == signal.SIG_IGN]
    for signum in ignored:
        signal.signal(signum, lambda *_: None)
    yield
    for signum in ignored:
        signal.signal(signum, signal.SIG_IGN)


def name(stop: int) -> str:
    return signal.Signals(stop).name


def local_run(tmp_path: Path) -> tuple[Path, str]:
    """An inventory of a host that finishes at once and one whose node task hangs, and the
    environment marker that finds the hanging task's process."""
    sysroot = hanging_sysroot(tmp_path / "hanging-node")
    inventory = write_inventory(
        tmp_path / "inv.yaml",
        [
            {"name": "fine", "connection": "local", "python": sys.executable},
            {"name": "hanging", "connection": "local", "python": sys.executable,
             "env": {"DCCTL_SYSROOT": str(sysroot)}},
        ],
    )  # fmt: skip
    return inventory, f"DCCTL_SYSROOT={sysroot}"


def start_local_run(tmp_path: Path, *flags: str) -> tuple[subprocess.Popen[str], Path, str]:
    inventory, marker = local_run(tmp_path)
    state = tmp_path / "state"
    proc = start_dcctl(["-i", str(inventory), "--state-dir", str(state), *flags, "check"],
                       tmp_path / "home")  # fmt: skip
    runs = state / "runs"
    try:
        assert wait_for(lambda: any(runs.glob("*/hosts/fine.json")), 60), "fine never finished"
        assert wait_for(lambda: pids_with_env(marker), 60), "the hanging task never started"
    except BaseException:
        proc.kill()
        raise
    return proc, runs, marker


def stopped(proc: subprocess.Popen[str], stop: int) -> tuple[str, str, float]:
    sent_at = time.monotonic()
    proc.send_signal(stop)
    try:
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return stdout, stderr, time.monotonic() - sent_at


def saved_run(runs: Path) -> dict[str, Any]:
    (run_dir,) = list(runs.iterdir())
    document: dict[str, Any] = json.loads((run_dir / "run.json").read_text())
    return document


def statuses(document: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {h["name"]: (h["status"], (h["error"] or {}).get("kind")) for h in document["hosts"]}


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=name)
def test_a_stop_signal_keeps_the_partial_run_prints_it_and_ends_the_node_task(
    tmp_path: Path, stop: int
) -> None:
    proc, runs, marker = start_local_run(tmp_path)
    stdout, stderr, took_s = stopped(proc, stop)
    assert proc.returncode == SIGNAL_EXITS[stop], stderr
    assert took_s < ENDS_WITHIN_S
    assert "Traceback" not in stderr
    document = saved_run(runs)
    jsonschema.validate(document, load_schema())
    assert document["status"] == "interrupted"
    assert statuses(document) == {"fine": ("passed", None), "hanging": ("error", "interrupted")}
    assert "2 host(s): 1 passed, 0 failed, 1 error" in stdout
    assert f"(interrupted by {name(stop)})" in stdout
    assert document["run_id"] in stdout
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the run"


def test_sigterm_with_json_prints_the_partial_document_and_a_notice(tmp_path: Path) -> None:
    proc, runs, marker = start_local_run(tmp_path, "--json")
    stdout, stderr, _took_s = stopped(proc, signal.SIGTERM)
    assert proc.returncode == 143, stderr
    document = json.loads(stdout)
    assert document == saved_run(runs)
    assert statuses(document) == {"fine": ("passed", None), "hanging": ("error", "interrupted")}
    assert stderr.strip().splitlines() == [
        f"dcctl: interrupted by SIGTERM; the partial run is in {runs / document['run_id']}"
    ]
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the run"


@pytest.mark.parametrize("written", [False, True], ids=["never-written", "written-after"])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=name)
def test_a_stop_signal_while_the_inventory_is_read_ends_at_once(
    tmp_path: Path, stop: int, written: bool
) -> None:
    """The inventory is a FIFO: dcctl is provably blocked reading it when the signal comes (a
    hung mount reads the same). No host was selected, so nothing ran: the process ends at once
    with the signal's code, saves no run and prints nothing, whether or not the inventory
    would have come afterwards."""
    contacted = tmp_path / "contacted"
    toucher = tmp_path / "python"
    toucher.write_text(f'#!/bin/sh\ntouch {contacted}\nexec {sys.executable} "$@"\n')
    toucher.chmod(0o755)
    fifo = tmp_path / "inv.yaml"
    os.mkfifo(fifo)
    state = tmp_path / "state"
    proc = start_dcctl(["-i", str(fifo), "--state-dir", str(state), "--json", "check"],
                       tmp_path / "home")  # fmt: skip
    writer = -1
    try:
        writer = wait_for_reader(fifo, 60)
        proc.send_signal(stop)
        if written:
            text = f"all:\n  hosts:\n    a: {{connection: local, python: {toucher}}}\n"
            with contextlib.suppress(BrokenPipeError):  # dcctl may be gone already
                os.write(writer, text.encode())
        # The write end stays open: a reader still waiting on it would wait for ever.
        stdout, stderr = proc.communicate(timeout=ENDS_WITHIN_S)
    finally:
        if writer >= 0:
            os.close(writer)
        proc.kill()
    assert proc.returncode == SIGNAL_EXITS[stop], stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    assert not state.exists()
    assert not contacted.exists()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=name)
def test_a_stop_signal_in_a_command_that_runs_no_host_exits_with_its_code(
    tmp_path: Path, stop: int
) -> None:
    """`inventory show` reads the inventory outside any run: nothing to save, but the exit
    code must still name the signal (Click would say exit 1, "a check failed")."""
    fifo = tmp_path / "inv.yaml"
    os.mkfifo(fifo)
    proc = start_dcctl(["-i", str(fifo), "inventory", "show"], tmp_path / "home")
    writer = -1
    try:
        writer = wait_for_reader(fifo, 60)
        proc.send_signal(stop)
        _stdout, stderr = proc.communicate(timeout=30)
    finally:
        if writer >= 0:
            os.close(writer)
        proc.kill()
    assert proc.returncode == SIGNAL_EXITS[stop], stderr
    assert "Traceback" not in stderr


def wait_for_reader(fifo: Path, timeout_s: float) -> int:
    """A write end of `fifo`, once a reader has it open."""
    opened: list[int] = []

    def open_writer() -> bool:
        try:
            opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            assert exc.errno == errno.ENXIO  # no reader yet
            return False
        return True

    assert wait_for(open_writer, timeout_s), "dcctl never opened its inventory"
    os.set_blocking(opened[0], True)
    return opened[0]


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=name)
def test_a_stop_signal_while_the_results_are_printed_lets_them_finish(
    tmp_path: Path, stop: int
) -> None:
    """The run is over and saved; the reader of stdout is slow: the output is completed, not
    cut short, and the exit code is the finished run's."""
    hosts = [{"name": f"h{i}", "connection": "local", "python": sys.executable} for i in range(3)]
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    state = tmp_path / "state"
    proc = start_dcctl(["-i", str(inventory), "--state-dir", str(state), "--json", "check"],
                       tmp_path / "home")  # fmt: skip
    assert proc.stdout is not None
    try:
        pipe = proc.stdout.fileno()
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 4096)  # less than the document
        assert wait_for(lambda: any(state.glob("runs/*/run.json")), 60), "run never finished"
        assert wait_for(lambda: blocked_writing_to_a_pipe(proc.pid), 30), "output never blocked"
        assert proc.poll() is None
        proc.send_signal(stop)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in stderr
    document = json.loads(stdout)  # whole
    assert document == saved_run(state / "runs")
    assert document["status"] == "passed"
    assert proc.returncode == 0, stderr


# dcctl's entry point (main.run) with its exit taken apart: the command returns its code, a
# SIGTERM lands, and only then does the process exit with that code.
SIGTERM_BEFORE_EXIT = """
import os, signal, sys
from dcctl.cli.main import app
from dcctl.fleet.signals import leave_on_stop_signals
leave_on_stop_signals()
code = app(sys.argv[1:], prog_name="dcctl", standalone_mode=False)
os.kill(os.getpid(), signal.SIGTERM)
sys.exit(code)
"""


def test_a_stop_signal_after_the_output_does_not_change_the_exit_code(tmp_path: Path) -> None:
    """The run is saved and printed and its code decided; a SIGTERM before the process is gone
    (systemd stopping the unit just then) must not turn it into 143."""
    hosts = [{"name": "h0", "connection": "local", "python": sys.executable}]
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    state = tmp_path / "state"
    proc = subprocess.run(
        [sys.executable, "-c", SIGTERM_BEFORE_EXIT, "-i", str(inventory),
         "--state-dir", str(state), "--json", "check"],
        capture_output=True, text=True, timeout=120, env=dcctl_env(tmp_path / "home"),
    )  # fmt: skip
    assert "Traceback" not in proc.stderr
    document = json.loads(proc.stdout)
    assert document == saved_run(state / "runs")
    assert document["status"] == "passed"
    assert proc.returncode == 0, proc.stderr


@contextlib.contextmanager
def terminal() -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    try:
        yield master, slave
    finally:
        for fd in (master, slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def _take_terminal() -> None:  # runs in the child, after setsid
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_closing_the_terminal_ends_the_run_like_sighup(tmp_path: Path) -> None:
    """dcctl in a terminal of its own (progress bar and table on it); the terminal closes:
    the kernel sends SIGHUP, and every later write to it fails."""
    inventory, marker = local_run(tmp_path)
    state = tmp_path / "state"
    runs = state / "runs"
    with terminal() as (master, slave):
        proc = subprocess.Popen(
            [sys.executable, "-m", "dcctl", "-i", str(inventory), "--state-dir", str(state),
             "check"],
            stdin=slave, stdout=slave, stderr=slave, env=dcctl_env(tmp_path / "home"),
            start_new_session=True, preexec_fn=_take_terminal,
        )  # fmt: skip
        os.close(slave)
        try:

            def started() -> bool:
                drain(master)  # a terminal nobody reads would block the progress bar
                return any(runs.glob("*/hosts/fine.json")) and bool(pids_with_env(marker))

            assert wait_for(started, 60), "the run never got going"
            os.close(master)  # the terminal window is closed
            proc.wait(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 129
    document = saved_run(runs)
    assert document["status"] == "interrupted"
    assert statuses(document) == {"fine": ("passed", None), "hanging": ("error", "interrupted")}
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the run"


def drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        try:
            if not os.read(fd, 65536):
                return
        except OSError:
            return


def start_worker_run(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]]
) -> tuple[subprocess.Popen[str], Path, str, list[int]]:
    sysroot = hanging_sysroot(tmp_path / "hanging-node")
    hanging = {**healthy_hosts[1], "name": "hanging", "env": {"DCCTL_SYSROOT": str(sysroot)}}
    inventory = write_inventory(tmp_path / "inv.yaml", [healthy_hosts[0], hanging])
    proc = start_dcctl(
        ["-i", str(inventory), "--state-dir", str(state_dir), "--workers", "2", "--json",
         "check"],
        tmp_path / "home",
    )  # fmt: skip
    runs = state_dir / "runs"
    marker = f"DCCTL_SYSROOT={sysroot}"
    try:
        assert wait_for(lambda: any(runs.glob("*/hosts/node1.json")), 60), "node1 never finished"
        assert wait_for(lambda: pids_with_env(marker), 60), "node task never started"
        workers = children_running(proc.pid, WORKER_MARK)
        assert len(workers) == 2, workers
    except BaseException:
        proc.kill()
        raise
    return proc, runs, marker, workers


@pytest.mark.parametrize("whole_unit", [False, True], ids=["controller-only", "whole-unit"])
def test_sigterm_with_workers_keeps_finished_hosts_and_ends_node_tasks(
    tmp_path: Path, state_dir: Path, healthy_hosts: list[dict[str, Any]], whole_unit: bool
) -> None:
    """`timeout` signals the controller (the workers have sessions of their own); systemd
    signals every process of the unit, the SSH workers too."""
    proc, runs, marker, workers = start_worker_run(tmp_path, state_dir, healthy_hosts)
    sent_at = time.monotonic()
    try:
        for pid in [proc.pid, *(workers if whole_unit else [])]:
            os.kill(pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert time.monotonic() - sent_at < ENDS_WITHIN_S
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    document = json.loads(stdout)
    assert document == saved_run(runs)
    assert document["status"] == "interrupted"
    assert statuses(document) == {"node1": ("passed", None), "hanging": ("error", "interrupted")}
    assert wait_for(lambda: not pids_with_env(marker), 5), "node task outlived the controller"
    assert wait_for(lambda: not any(process_alive(pid) for pid in workers), 10), "workers left"
