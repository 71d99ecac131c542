"""A real dcctl run whose state dir cannot take its files: the results are still shown, one line
names the path and the fix, and the exit code says "not saved" (4), not "a check failed".

Tests run as root, where permission bits stop no write: the read-only and full file systems
are real tmpfs mounts (skipped where mounting is not permitted).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from cli_runner import dcctl_env, load_schema, run_dcctl, start_dcctl
from mounts import fill, tmpfs
from processes import blocked_writing_to_a_pipe, pids_with_env, wait_for
from sshlab import write_inventory

EXIT_HOST_ERROR = 3
EXIT_NOT_SAVED = 4


@contextlib.contextmanager
def unwritable_state_dir(tmp_path: Path, kind: str) -> Iterator[tuple[Path, str, str]]:
    """(state dir, the path the error line names, what it says about it)."""
    if kind == "read-only":
        with tmpfs(tmp_path / "ro", "ro,size=64k") as mount:
            yield mount / "state", str(mount / "state"), "Read-only file system"
    elif kind == "through-a-file":
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        yield blocker / "state", str(blocker), "is a file, not a directory"
    else:
        with tmpfs(tmp_path / "full", "size=64k") as mount:
            fill(mount)
            yield mount / "state", str(mount / "state"), "No space left on device"


def assert_one_error_line(stderr: str, path: str, says: str) -> None:
    assert "Traceback" not in stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("dcctl: error: ")
    assert path in line and says in line
    assert "--state-dir DIR" in line


@pytest.mark.parametrize("kind", ["read-only", "through-a-file", "full"])
def test_json_run_with_an_unwritable_state_dir_prints_its_document(
    tmp_path: Path, kind: str
) -> None:
    with unwritable_state_dir(tmp_path, kind) as (state, path, says):
        result = run_dcctl(["--state-dir", str(state), "--json", "check"], home=tmp_path)
        assert not (state / "runs").is_dir() or not any((state / "runs").rglob("*.json"))
    assert result.code == EXIT_NOT_SAVED, result.stderr
    document = result.json()
    jsonschema.validate(document, load_schema())
    assert [(h["name"], h["status"]) for h in document["hosts"]] == [("localhost", "passed")]
    assert_one_error_line(result.stderr, path, says)


def test_table_run_with_a_read_only_state_dir_shows_the_results(tmp_path: Path) -> None:
    with unwritable_state_dir(tmp_path, "read-only") as (state, path, says):
        result = run_dcctl(["--state-dir", str(state), "check"], home=tmp_path)
    assert result.code == EXIT_NOT_SAVED, result.stderr
    assert "localhost" in result.stdout and "passed" in result.stdout
    assert "1 host(s): 1 passed" in result.stdout
    assert "not saved" in result.stdout
    assert_one_error_line(result.stderr, path, says)
    assert "make it writable" in result.stderr


@pytest.mark.parametrize("kind", ["read-only", "through-a-file"])
def test_a_host_that_could_not_be_evaluated_outranks_not_saved(tmp_path: Path, kind: str) -> None:
    """A cron job on a read-only state dir must still learn that a host could not be
    evaluated (3); the line on stderr still says the run was not saved."""
    inventory = write_inventory(
        tmp_path / "inv.yaml",
        [
            {"name": "fine", "connection": "local", "python": sys.executable},
            {"name": "broken", "connection": "local", "python": str(tmp_path / "no-python")},
        ],
    )
    with unwritable_state_dir(tmp_path, kind) as (state, path, says):
        args = ["-i", str(inventory), "--state-dir", str(state), "--json", "check"]
        result = run_dcctl(args, home=tmp_path)
    assert result.code == EXIT_HOST_ERROR, result.stderr
    document = result.json()
    assert [(h["name"], h["status"]) for h in document["hosts"]] == [
        ("fine", "passed"), ("broken", "error")
    ]  # fmt: skip
    assert_one_error_line(result.stderr, path, says)


def test_a_disk_that_fills_mid_run_loses_no_result_from_the_output(tmp_path: Path) -> None:
    """The first host's file is written; then the disk fills; the second host still runs and
    is shown, and the line names the file that could not be written."""
    sysroot = tmp_path / "held-node"
    (sysroot / "etc").mkdir(parents=True)
    os.mkfifo(sysroot / "etc" / "os-release")  # the node task waits on it until the test writes
    marker = f"DCCTL_SYSROOT={sysroot}"
    inventory = write_inventory(
        tmp_path / "inv.yaml",
        [
            {"name": "first", "connection": "local", "python": sys.executable},
            {"name": "held", "connection": "local", "python": sys.executable,
             "env": {"DCCTL_SYSROOT": str(sysroot)}},
        ],
    )  # fmt: skip
    with tmpfs(tmp_path / "small", "size=256k") as mount:
        state = mount / "state"
        proc = start_dcctl(["-i", str(inventory), "--state-dir", str(state), "--json", "check"],
                           tmp_path / "home")  # fmt: skip
        try:
            first = state / "runs"
            assert wait_for(lambda: any(first.glob("*/hosts/first.json")), 60), "no first result"
            assert wait_for(lambda: pids_with_env(marker), 60), "held task never started"
            fill(mount)
            release(sysroot / "etc" / "os-release", b'PRETTY_NAME="Held OS"\n')
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
        (run_dir,) = list((state / "runs").iterdir())
        on_disk = sorted(p.name for p in (run_dir / "hosts").iterdir())
    assert proc.returncode == EXIT_NOT_SAVED, stderr
    document = json.loads(stdout)
    jsonschema.validate(document, load_schema())
    assert [h["name"] for h in document["hosts"]] == ["first", "held"]
    held = document["hosts"][1]
    assert held["error"] is None and held["facts"]["os"]["pretty_name"] == "Held OS"
    assert_one_error_line(stderr, str(run_dir / "hosts" / "held.json"), "No space left on device")
    assert "free space there" in stderr
    assert on_disk == ["first.json"]


def release(fifo: Path, text: bytes) -> None:
    """Feed a FIFO its content once its reader is there."""
    opened: list[int] = []

    def open_writer() -> bool:
        try:
            opened.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            assert exc.errno == errno.ENXIO
            return False
        return True

    assert wait_for(open_writer, 30), "nothing reads the FIFO"
    os.set_blocking(opened[0], True)
    os.write(opened[0], text)
    os.close(opened[0])


@pytest.mark.parametrize("flags", [["--json"], ["-v"]], ids=["json", "table"])
def test_output_that_cannot_be_written_is_exit_4_with_one_line(
    tmp_path: Path, flags: list[str]
) -> None:
    """`dcctl check > file` on a full disk: the run is saved, but what was printed is not."""
    state = tmp_path / "state"
    with open("/dev/full", "w") as full:  # every write: No space left on device
        proc = subprocess.run(
            [sys.executable, "-m", "dcctl", "--state-dir", str(state), *flags, "check"],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
            env=dcctl_env(tmp_path / "home"),
        )  # fmt: skip
    assert proc.returncode == EXIT_NOT_SAVED, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "dcctl: error: cannot write the output: No space left on device"
    ]
    assert json.loads(next(state.glob("runs/*/run.json")).read_text())["status"] == "passed"


def test_a_reader_that_leaves_early_changes_nothing(tmp_path: Path) -> None:
    """`dcctl -v check | head`: the reader had what it wanted; the exit code is still the run's
    (rich's own answer to a closed pipe is exit code 1, "a check failed")."""
    hosts = [{"name": f"h{i}", "connection": "local", "python": sys.executable} for i in range(3)]
    inventory = write_inventory(tmp_path / "inv.yaml", hosts)
    state = tmp_path / "state"
    proc = start_dcctl(["-i", str(inventory), "--state-dir", str(state), "-v", "check"],
                       tmp_path / "home")  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        pipe = proc.stdout.fileno()
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, 4096)  # less than the output
        assert wait_for(lambda: any(state.glob("runs/*/run.json")), 60), "run never finished"
        assert wait_for(lambda: blocked_writing_to_a_pipe(proc.pid), 30), "output never blocked"
        proc.stdout.close()  # `head` has its lines
        proc.wait(timeout=30)
        stderr = proc.stderr.read()
    finally:
        proc.kill()
    assert "Traceback" not in stderr
    assert stderr == ""
    assert proc.returncode == 0
