"""The shipped node runtime: a deterministic zipapp that runs on its own with a plain python."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import zipfile
from io import BytesIO
from pathlib import Path

from dcctl.fleet.runtime import build_runtime, task_argv
from dcctl.inventory.model import Host
from dcctl.node.payload import extract_payload


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
    payload = extract_payload(proc.stdout)
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
        assert extract_payload(stdout.decode()) is not None
        assert proc.stdin is not None
        proc.stdin.close()
