"""The shipped node runtime: a deterministic zipapp that runs on its own with a plain python."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import pytest

from dcctl.fleet.runtime import build_runtime, run_task, task_argv
from dcctl.inventory.model import Host
from dcctl.node.payload import EXIT_NO_PYTHON, EXIT_RUNTIME_MISSING, read_payload
from dcctl.transport.base import CommandResult, HostError


def test_runtime_holds_only_the_node_package() -> None:
    names = zipfile.ZipFile(BytesIO(build_runtime().archive)).namelist()
    assert "__main__.py" in names
    shipped = {"__main__.py", "dcctl/__init__.py", "pynvml.py"}
    assert all(n in shipped or n.startswith("dcctl/node/") for n in names)
    assert "dcctl/node/main.py" in names
    # GPU checks must work on a node with only a driver and a Python: NVML bindings go along.
    assert "pynvml.py" in names


def test_runtime_digest_is_stable() -> None:
    build_runtime.cache_clear()
    first = build_runtime()
    build_runtime.cache_clear()
    assert build_runtime() == first


def test_runtime_runs_standalone_with_isolated_python(tmp_path: Path) -> None:
    archive = tmp_path / "runtime.pyz"
    archive.write_bytes(build_runtime().archive)
    # -I: no site-packages, no cwd on sys.path: proves the zip carries all it imports.
    proc = subprocess.run(
        [sys.executable, "-I", str(archive), "facts", '{"scratch_dir": "/tmp"}'],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    payload = read_payload(proc.stdout)
    assert payload is not None
    assert payload["kernel"]


def test_task_argv_passes_inventory_values_as_arguments_only() -> None:
    host = Host(name="n", address="a", python="/py;rm -rf /", env={"X": "$(boom)"})
    argv = task_argv(host, build_runtime(), "facts", {"scratch_dir": "/tmp/`x`"})
    assert argv[:2] == ["env", "X=$(boom)"]
    script = argv[argv.index("-c") + 1]
    assert "$(boom)" not in script and "/py;rm" not in script
    # The quoted command line round-trips to the same argv: nothing gets split or expanded.
    assert shlex.split(shlex.join(argv)) == argv


def test_shipped_nvml_bindings_import_from_the_zip(tmp_path: Path) -> None:
    archive = tmp_path / "runtime.pyz"
    archive.write_bytes(build_runtime().archive)
    path_setup = f"import sys; sys.path.insert(0, {str(archive)!r})"
    probe = f"{path_setup}; import pynvml; print(pynvml.__file__)"
    proc = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(archive))


def test_watched_runtime_exits_cleanly_while_its_stdin_stays_open(tmp_path: Path) -> None:
    archive = tmp_path / "runtime.pyz"
    archive.write_bytes(build_runtime().archive)
    for _ in range(5):  # the shutdown race showed up only sometimes
        proc = subprocess.Popen(
            [sys.executable, str(archive), "facts", "{}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "DCCTL_STDIN_WATCHDOG": "1"},
        )
        assert proc.stdout is not None and proc.stderr is not None
        stdout = proc.stdout.read()  # stdin stays open, as the controller keeps it
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, stderr
        assert b"Fatal Python error" not in stderr
        assert read_payload(stdout.decode()) is not None
        assert proc.stdin is not None
        proc.stdin.close()


def _node_env(cache_home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(cache_home), "XDG_CACHE_HOME": str(cache_home)}


def _run_argv(
    argv: list[str], env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run as a node would; a task's stdin stays open (its watchdog ends the task on EOF)."""
    proc = subprocess.Popen(
        argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    code = proc.wait(timeout=60)
    if stdin is None:
        proc.stdin.close()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def test_upload_then_run_through_the_shipped_shell_scripts(tmp_path: Path) -> None:
    """What a node's login shell executes: a miss, the upload, then a warm run from bytecode."""
    from dcctl.fleet.runtime import MISSING_MARK, upload_argv

    runtime = build_runtime()
    host = Host(name="n", address="a", python=sys.executable)
    env = _node_env(tmp_path)
    run = task_argv(host, runtime, "facts", {"scratch_dir": str(tmp_path)})
    missing = _run_argv(run, env)
    assert missing.returncode == EXIT_RUNTIME_MISSING and MISSING_MARK in missing.stdout.decode()
    upload = _run_argv(upload_argv(host, runtime), env, stdin=runtime.archive)
    assert upload.returncode == 0, upload.stderr
    cache = tmp_path / "dcctl"
    installed = cache / f"runtime-{runtime.digest}"
    assert [p.name for p in cache.iterdir()] == [installed.name]  # no temporary left
    assert list((installed / "dcctl" / "node" / "probes" / "__pycache__").glob("*.pyc"))
    warm = _run_argv(run, env)
    assert warm.returncode == 0, warm.stderr
    payload = read_payload(warm.stdout.decode())
    assert payload is not None
    if payload["fio"] is not None:  # learnt once, kept beside the runtime for later tasks
        assert (cache / "fio-version.json").is_file()
    names = {p.name for p in cache.iterdir()}
    assert names <= {installed.name, "fio-version.json"}
    # A second upload (two runs racing on one node) keeps the installed runtime whole.
    again = _run_argv(upload_argv(host, runtime), env, stdin=runtime.archive)
    assert again.returncode == 0, again.stderr
    assert {p.name for p in cache.iterdir()} == names
    assert _run_argv(run, env).returncode == 0


def test_upload_of_a_broken_archive_leaves_nothing_behind(tmp_path: Path) -> None:
    from dcctl.fleet.runtime import upload_argv

    runtime = build_runtime()
    host = Host(name="n", address="a", python=sys.executable)
    upload = _run_argv(upload_argv(host, runtime), _node_env(tmp_path), stdin=b"not a zip")
    assert upload.returncode != 0
    assert b"BadZipFile" in upload.stderr
    assert list((tmp_path / "dcctl").iterdir()) == []


def test_missing_interpreter_is_reported_before_the_cache_is_looked_at(tmp_path: Path) -> None:
    from dcctl.fleet.runtime import NO_PYTHON_MARK

    host = Host(name="n", address="a", python="/nonexistent/python3")
    result = _run_argv(task_argv(host, build_runtime(), "facts", {}), _node_env(tmp_path))
    assert result.returncode == EXIT_NO_PYTHON and NO_PYTHON_MARK in result.stdout.decode()


# --- an interpreter that ends without a result -------------------------------------------------


class Replies:
    """A transport whose command ends as given: what a node reports for a killed task."""

    def __init__(self, result: CommandResult) -> None:
        self.result = result

    def connect(self) -> None:
        pass

    def run(
        self, argv: Sequence[str], deadline: float, stdin: bytes | None = None
    ) -> CommandResult:
        return self.result

    def close(self) -> None:
        pass


def no_result_message(exit_code: int, stderr: str = "") -> str:
    host = Host(name="n1", address="a", python="python3")
    with pytest.raises(HostError) as caught:
        run_task(
            Replies(CommandResult(exit_code, "", stderr)), host, "facts", {}, time.monotonic() + 60
        )
    assert caught.value.kind == "runtime"
    return caught.value.message


@pytest.mark.parametrize(
    ("exit_code", "ended"),
    [
        # Killed on the node: the local transport reports -N, a shell 128+N, and an SSH
        # server's exit-signal leaves no status at all (paramiko: -1).
        (-9, "was killed by SIGKILL (out of memory?)"),
        (-11, "was killed by SIGSEGV"),
        (137, "exited 137: killed by SIGKILL (out of memory?)"),
        (139, "exited 139: killed by SIGSEGV"),
        (-1, "was killed by a signal (the SSH server sent no exit status)"),
    ],
)
def test_a_killed_interpreter_is_named_not_guessed_at(exit_code: int, ended: str) -> None:
    # Before: "exited -9 ... likely causes: a login script that writes to stdout ...".
    assert no_result_message(exit_code) == (
        f"python3 on n1 {ended} and printed no dcctl result (no output)"
    )


def test_a_killed_interpreter_still_shows_what_it_printed_last() -> None:
    message = no_result_message(-11, "Fatal Python error: Segmentation fault")
    assert message == (
        "python3 on n1 was killed by SIGSEGV and printed no dcctl result: "
        "Fatal Python error: Segmentation fault"
    )


def test_an_ordinary_exit_without_a_result_keeps_its_likely_causes() -> None:
    assert "likely causes: a login script" in no_result_message(0)
    assert "likely causes: a login script" in no_result_message(200)
