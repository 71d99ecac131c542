"""What a host's error says when its `python` cannot run dcctl: real old interpreters, programs
that are not Python, and output the controller cannot use, all through the local transport and
the real run and install scripts (dcctl.fleet.runtime), as on a node."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sysroots import HEALTHY

from dcctl.fleet.runtime import build_runtime, run_task
from dcctl.inventory.model import Host
from dcctl.node.payload import MIN_PYTHON, PAYLOAD_END, PAYLOAD_START
from dcctl.node.sysroot import SYSROOT_ENV
from dcctl.transport.base import STDOUT_KEPT_BYTES, HostError
from dcctl.transport.local import LocalTransport

PYENV = Path("/root/.pyenv/versions")
PYTHON_27 = PYENV / "2.7.18" / "bin" / "python2.7"
PYTHON_36 = PYENV / "3.6.15" / "bin" / "python3.6"
PYTHON_37 = PYENV / "3.7.16" / "bin" / "python3.7"
PYTHON_38 = PYENV / "3.8.18" / "bin" / "python3.8"
MINIMUM = ".".join(map(str, MIN_PYTHON))
TASK_S = 60.0


def needs(python: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not python.is_file(), reason=f"{python} not installed (pyenv install {python.parts[-3]})"
    )


def host(python: Path | str, cache: Path, **env: str) -> Host:
    # The host's env reaches the node's scripts: XDG_CACHE_HOME gives each test its own cache.
    return Host(
        name="n1",
        address="n1",
        connection="local",
        python=str(python),
        env={"XDG_CACHE_HOME": str(cache), **env},
    )


def run_facts(target: Host) -> dict[str, object]:
    deadline = time.monotonic() + TASK_S
    return run_task(LocalTransport(), target, "facts", {"scratch_dir": "/tmp"}, deadline)


def error_of(target: Host) -> HostError:
    with pytest.raises(HostError) as caught:
        run_facts(target)
    return caught.value


def fake_python(directory: Path, body: str) -> Path:
    """A `python` that is a shell script: what a node's broken or foreign interpreter does."""
    path = directory / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def printing_python(directory: Path, stdout: str) -> Path:
    """A `python` that prints what the Python expression `stdout` makes, then exits 0."""
    printer = directory / "printer.py"
    printer.write_text(f"import sys\nsys.stdout.write({stdout})\n")
    return fake_python(directory, f"exec {sys.executable} {printer}")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node cache holding the runtime, installed by this interpreter: later tasks find it."""
    cache = tmp_path_factory.mktemp("cache")
    run_facts(host(sys.executable, cache))
    assert (cache / "dcctl" / f"runtime-{build_runtime().digest}" / "__main__.py").is_file()
    return cache


# --- interpreters too old ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "version"),
    [
        pytest.param(PYTHON_27, "2.7.18", marks=needs(PYTHON_27)),
        pytest.param(PYTHON_36, "3.6.15", marks=needs(PYTHON_36)),
        pytest.param(PYTHON_37, "3.7.16", marks=needs(PYTHON_37)),
    ],
)
def test_first_contact_with_an_old_python_says_it_is_too_old(
    tmp_path: Path, python: Path, version: str
) -> None:
    error = error_of(host(python, tmp_path))
    assert error.kind == "runtime"
    assert error.message == (
        f"{python} on n1: Python {version} is too old, need >= {MINIMUM} "
        "(set `python` for this host in the inventory)"
    )
    assert list((tmp_path / "dcctl").iterdir()) == []  # nothing half-installed


@needs(PYTHON_36)
def test_old_python_finding_a_runtime_installed_by_a_newer_one(installed: Path) -> None:
    error = error_of(host(PYTHON_36, installed))
    assert error.kind == "runtime"
    assert "Python 3.6.15 is too old, need >= " in error.message
    assert "SyntaxError" not in error.message


@needs(PYTHON_38)
def test_the_minimum_python_compiles_every_node_file() -> None:
    node = Path(__file__).parents[2] / "dcctl" / "node"
    files = [str(path) for path in sorted(node.rglob("*.py"))]
    check = "import sys\nfor p in sys.argv[1:]: compile(open(p).read(), p, 'exec')"
    proc = subprocess.run(
        [str(PYTHON_38), "-c", check, *files], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr


@needs(PYTHON_38)
def test_the_minimum_python_runs_the_facts_task(tmp_path: Path) -> None:
    facts = run_facts(host(PYTHON_38, tmp_path, **{SYSROOT_ENV: str(HEALTHY)}))
    assert "probe_errors" not in facts
    assert len(facts["gpus"]) == 8  # type: ignore[arg-type]


# --- a `python` that is not Python, or does not run the runtime ------------------------------


def test_first_contact_with_a_program_that_is_not_python(tmp_path: Path) -> None:
    # /bin/true exits 0 whatever it is given: before, the task found no runtime again and the
    # host read "exited 97 without a result: no output".
    error = error_of(host("/bin/true", tmp_path))
    assert error.kind == "runtime"
    assert error.message.startswith(
        "cannot install the node runtime with /bin/true on n1: it exited 0 without running "
        "the install script (no output); is `python` a Python >= "
    )
    assert "97" not in error.message


def test_first_contact_with_a_program_that_echoes_its_arguments(tmp_path: Path) -> None:
    error = error_of(host("/bin/echo", tmp_path))
    assert error.message.startswith("cannot install the node runtime with /bin/echo on n1")


def test_first_contact_with_a_python_that_crashes(tmp_path: Path) -> None:
    crashing = fake_python(tmp_path, "echo 'Segmentation fault (core dumped)' >&2; exit 139")
    error = error_of(host(crashing, tmp_path / "cache"))
    assert error.kind == "runtime"
    assert error.message == (
        f"cannot install the node runtime in ~/.cache/dcctl with {crashing} on n1 (exit 139): "
        "Segmentation fault (core dumped)"
    )


def test_output_without_a_result_is_shown_with_its_likely_cause(
    tmp_path: Path, installed: Path
) -> None:
    banner = fake_python(tmp_path, "echo 'Welcome to gpu001'; echo; echo 'Last login: Mon'")
    error = error_of(host(banner, installed))
    assert error.kind == "runtime"
    assert error.message.startswith(
        f"{banner} on n1 exited 0 and printed no dcctl result (last output: 'Last login: Mon'); "
        "likely causes: a login script that writes to stdout or ends the session, or "
        "`python` is not a Python >= "
    )


@pytest.mark.parametrize(
    ("signal", "ended"),
    [("KILL", "was killed by SIGKILL (out of memory?)"), ("SEGV", "was killed by SIGSEGV")],
)
def test_an_interpreter_killed_by_a_signal_is_named(
    tmp_path: Path, installed: Path, signal: str, ended: str
) -> None:
    # Before: "exited -9 ... (no output); likely causes: a login script that writes ...".
    killed = fake_python(tmp_path, f"kill -{signal} $$")
    assert error_of(host(killed, installed)).message == (
        f"{killed} on n1 {ended} and printed no dcctl result (no output)"
    )


def test_a_signal_reported_by_a_shell_is_named(tmp_path: Path, installed: Path) -> None:
    # A wrapper shell that runs the interpreter as its child exits 128 + the signal.
    wrapped = fake_python(tmp_path, "exec 2>/dev/null; sh -c 'kill -SEGV $$'; exit $?")
    assert error_of(host(wrapped, installed)).message == (
        f"{wrapped} on n1 exited 139: killed by SIGSEGV and printed no dcctl result (no output)"
    )


def test_a_traceback_is_named_instead_of_a_guess(tmp_path: Path, installed: Path) -> None:
    broken = fake_python(tmp_path, "echo 'ImportError: bad magic number' >&2; exit 1")
    error = error_of(host(broken, installed))
    assert error.message == (
        f"{broken} on n1 exited 1 and printed no dcctl result: ImportError: bad magic number"
    )


# --- payloads the controller cannot use ----------------------------------------------------


def test_a_payload_over_the_kept_output_is_too_large_not_missing(
    tmp_path: Path, installed: Path
) -> None:
    size = STDOUT_KEPT_BYTES + 2**20
    frame = f"{PAYLOAD_START!r} + '{{\"x\": \"' + 'a' * {size} + '\"}}' + {PAYLOAD_END!r}"
    huge = printing_python(tmp_path, frame)
    error = error_of(host(huge, installed))
    assert error.kind == "runtime"
    assert error.message.startswith("payload too large (over 16 MiB): ")


def test_a_deeply_nested_payload_is_a_clear_error(tmp_path: Path, installed: Path) -> None:
    depth = 200_000  # far past the interpreter's recursion limit
    nested = printing_python(
        tmp_path, f"{PAYLOAD_START!r} + '[' * {depth} + ']' * {depth} + {PAYLOAD_END!r}"
    )
    error = error_of(host(nested, installed))
    assert error.kind == "runtime"
    assert error.message == (
        f"{nested} on n1 printed an unreadable result: JSON nested deeper than 64 levels"
    )
