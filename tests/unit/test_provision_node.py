"""The `provision` node task against real venvs, real pip and fake system tools on PATH.

pip only ever reads a wheelhouse built here (--no-index): `faketorch` stands in for torch
through torch_spec, and a one-file `nvidia-ml-py` for the real one. apt-get, sudo and
nvidia-smi are shell scripts on a PATH that holds nothing else, so each test decides what the
"node" has. One venv is made for the module and only read by the tests after the first.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dcctl.fleet.runtime import build_runtime
from dcctl.node.facts import TaskParamsError
from dcctl.node.main import TASKS
from dcctl.node.payload import parse_progress_line, read_payload
from dcctl.node.provision import prune as prune_module
from dcctl.node.provision.commands import run_command
from dcctl.node.provision.fio import fio_step
from dcctl.node.provision.packages import index_args, packages_step, to_install
from dcctl.node.provision.params import parse_params
from dcctl.node.provision.persistence import persistence_step
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.python import Maker, find_maker, python_step
from dcctl.node.provision.scratch import scratch_step
from dcctl.node.provision.task import provision_task
from dcctl.node.provision.torch_build import BuildChoice
from dcctl.node.provision.venv import VenvState

PYTHON_38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
needs_python_38 = pytest.mark.skipif(not PYTHON_38.is_file(), reason=f"{PYTHON_38} not installed")
ROOT = 0
USER = 4242  # a non-root user: no passwd entry, so the uid names it
STEPS = ["python", "venv", "packages", "fio", "persistence", "scratch"]
SHELL = "/bin/sh"


def _wheel(wheelhouse: Path, name: str, version: str, files: dict[str, str]) -> None:
    """A pure-Python wheel, written by hand: a zip with the package and its dist-info."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: dcctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    with zipfile.ZipFile(wheelhouse / f"{dist}-{version}-py3-none-any.whl", "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    _wheel(house, "faketorch", "1.0", {"faketorch/__init__.py": "__version__ = '1.0'\n"})
    _wheel(house, "nvidia-ml-py", "12.0", {"pynvml.py": "def nvmlInit():\n    pass\n"})
    _wheel(house, "extra-pkg", "0.1", {"extra_pkg.py": ""})
    return house


def _tool(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{SHELL}\n{script}\n")
    path.chmod(0o755)


@pytest.fixture
def bare_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory: no fio, no package manager, no nvidia-smi, no sudo."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def _params(root: Path, wheelhouse: Path, **extra: Any) -> dict[str, Any]:
    return {
        "venv": str(root / "opt" / "venv"),
        "wheelhouse": str(wheelhouse),
        "torch_spec": "faketorch==1.0",
        "scratch_dir": str(root / "scratch"),
        **extra,
    }


def _statuses(payload: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["status"] for entry in payload["steps"]}


def _by_name(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(entry for entry in payload["steps"] if entry["name"] == name)


def _no_driver() -> tuple[bool, str | None]:
    return False, None


def _run(raw: dict[str, Any], euid: int = ROOT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    updates: list[dict[str, Any]] = []
    payload = provision_task(raw, euid=euid, progress=updates.append, read_driver=_no_driver)
    json.dumps(payload)  # it goes to the controller as JSON
    return payload, updates


class Provisioned:
    def __init__(self, root: Path, first: dict[str, Any], second: dict[str, Any]) -> None:
        self.root = root
        self.first = first
        self.second = second
        self.venv = root / "opt" / "venv"


@pytest.fixture(scope="module")
def provisioned(
    tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path
) -> Iterator[Provisioned]:
    """A node provisioned twice: the venv the later tests only read."""
    root = tmp_path_factory.mktemp("node")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "fio", "exit 0")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", str(bin_dir))
        first, _ = _run(_params(root, wheelhouse))
        second, _ = _run(_params(root, wheelhouse))
    yield Provisioned(root, first, second)


# --- the whole task ------------------------------------------------------------------------


def test_first_run_makes_the_venv_and_installs_second_run_is_all_ok(
    provisioned: Provisioned,
) -> None:
    first = _statuses(provisioned.first)
    assert first == {
        "python": "ok", "venv": "changed", "packages": "changed", "fio": "ok",
        "persistence": "skipped", "scratch": "changed",
    }  # fmt: skip
    packages = _by_name(provisioned.first, "packages")
    assert packages["message"].startswith("installed faketorch==1.0 nvidia-ml-py (from ")
    install = packages["commands"][-1]
    assert install[:3] == [str(provisioned.venv / "bin" / "python"), "-m", "pip"]
    assert install[install.index("--no-index") :][:2] == ["--no-index", "--find-links"]
    assert provisioned.first["venv_python"] == str(provisioned.venv / "bin" / "python")
    assert provisioned.first["torch_build"] is None  # a wheelhouse: no build to choose
    assert provisioned.first["check"] is False

    assert set(_statuses(provisioned.second).values()) <= {"ok", "skipped"}
    assert _statuses(provisioned.second)["packages"] == "ok"
    assert "already installed" in _by_name(provisioned.second, "packages")["message"]
    site = list((provisioned.venv / "lib").glob("python*/site-packages/faketorch"))
    assert site, "faketorch is in the venv"
    assert (provisioned.root / "scratch").stat().st_mode & 0o777 == 0o700


def test_progress_names_each_step_as_it_starts(bare_path: Path, tmp_path: Path) -> None:
    updates: list[dict[str, Any]] = []
    raw = {**_params(tmp_path, tmp_path, check=True), "prune": True}
    provision_task(raw, euid=ROOT, progress=updates.append, read_driver=_no_driver)
    assert [u["step"] for u in updates] == [*STEPS, "prune"]
    assert all(u["phase"] == "start" for u in updates)


def test_the_runtime_entry_point_knows_provision(
    bare_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = TASKS["provision"](_params(tmp_path, tmp_path, check=True))
    assert [entry["name"] for entry in payload["steps"]] == STEPS
    lines = capsys.readouterr().out.splitlines()
    assert parse_progress_line(lines[0]) == {"step": "python", "phase": "start"}


def _tree(root: Path) -> list[tuple[str, int, int]]:
    found = []
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        found.append((str(path.relative_to(root)), info.st_mode, info.st_mtime_ns))
    return found


def test_check_changes_nothing_and_says_what_would_run(
    bare_path: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    _tool(bare_path, "apt-get", "echo ran > $0.ran")
    node = tmp_path / "node"
    node.mkdir()
    before = _tree(tmp_path)
    payload, _ = _run(_params(node, wheelhouse, check=True))
    assert _tree(tmp_path) == before
    assert payload["check"] is True and payload["venv_python"] is None
    venv = _by_name(payload, "venv")
    assert venv["status"] == "changed" and venv["message"].startswith("would create a venv")
    assert venv["commands"] == [[sys.executable, "-m", "venv", str(node / "opt" / "venv")]]
    packages = _by_name(payload, "packages")
    assert packages["status"] == "changed"
    assert packages["message"].startswith("would install faketorch==1.0 nvidia-ml-py")
    fio = _by_name(payload, "fio")
    assert fio["status"] == "changed" and fio["message"] == "would install fio with apt-get"
    assert fio["commands"] == [["apt-get", "install", "-y", "fio"]]
    assert payload["package_manager"] == "apt-get"
    assert _by_name(payload, "scratch")["message"].startswith("would create")


# Nothing listens on port 9 of loopback: a pip that asked this index would fail or hang.
DEAD_INDEX = "http://127.0.0.1:9/simple"


def test_check_on_a_venv_decides_offline_which_packages_it_lacks(
    bare_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    before = _tree(provisioned.venv)
    raw = {
        **_params(provisioned.root, wheelhouse, check=True),
        "packages": ["extra-pkg"],
        "wheelhouse": None,
        "pip_index_url": DEAD_INDEX,
    }
    payload, _ = _run(raw)
    assert _tree(provisioned.venv) == before
    packages = _by_name(payload, "packages")
    assert packages["status"] == "changed"
    assert packages["message"] == f"would install extra-pkg (from {DEAD_INDEX})"
    asked, install = packages["commands"]
    assert asked[:3] == [str(provisioned.venv / "bin" / "python"), "-I", "-c"]
    assert asked[4:] == ["faketorch==1.0", "extra-pkg"]  # argv items, never code
    assert "pip" not in asked[:3] and "--dry-run" not in install
    assert payload["venv_python"] == str(provisioned.venv / "bin" / "python")


def test_satisfied_packages_are_ok_without_asking_any_index(
    bare_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    raw = {**_params(provisioned.root, wheelhouse), "wheelhouse": None, "pip_index_url": DEAD_INDEX}
    started = time.monotonic()
    payload, _ = _run(raw)
    packages = _by_name(payload, "packages")
    assert packages["status"] == "ok", packages
    assert packages["message"] == (
        f"faketorch==1.0 nvidia-ml-py already installed in {provisioned.venv}"
    )
    assert len(packages["commands"]) == 1 and "install" not in packages["commands"][0]
    assert time.monotonic() - started < 30


def test_a_package_manager_failure_fails_fio_only(
    bare_path: Path, tmp_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    _tool(
        bare_path,
        "apt-get",
        "echo 'E: Unable to fetch some archives, maybe run apt-get update' >&2; exit 100",
    )
    raw = {**_params(tmp_path, wheelhouse), "venv": str(provisioned.venv)}
    payload, _ = _run(raw)
    fio = _by_name(payload, "fio")
    assert fio["status"] == "failed"
    assert fio["message"] == (
        "apt-get could not install fio: E: Unable to fetch some archives, maybe run apt-get update"
    )
    statuses = _statuses(payload)
    assert statuses["packages"] == "ok" and statuses["scratch"] == "changed"


def test_apt_without_package_lists_is_updated_once_and_retried(
    bare_path: Path, tmp_path: Path
) -> None:
    lists = tmp_path / "lists"
    _tool(
        bare_path,
        "apt-get",
        f'if [ "$1" = update ]; then : > {lists}; exit 0; fi\n'
        f"[ -e {lists} ] || {{ echo 'E: Unable to locate package fio' >&2; exit 100; }}\n"
        f": > {bare_path}/fio; /bin/chmod +x {bare_path}/fio",
    )
    entry = fio_step("apt-get", Privilege(ROOT, "root", become=False), check=False)
    assert entry["status"] == "changed"
    install = ["apt-get", "install", "-y", "fio"]
    assert entry["commands"] == [install, ["apt-get", "update"], install]


def test_apt_update_failing_is_the_reason_given(bare_path: Path) -> None:
    _tool(
        bare_path,
        "apt-get",
        'if [ "$1" = update ]; then echo "E: Could not get lock /var/lib/apt/lists/lock" >&2; '
        "exit 100; fi\n"
        "echo 'E: Unable to locate package fio' >&2; exit 100",
    )
    entry = fio_step("apt-get", Privilege(ROOT, "root", become=False), check=False)
    install = ["apt-get", "install", "-y", "fio"]
    assert entry["commands"] == [install, ["apt-get", "update"]]
    assert entry["status"] == "failed"
    assert entry["message"] == (
        "apt-get could not install fio: E: Could not get lock /var/lib/apt/lists/lock"
    )


@needs_python_38
def test_the_oldest_node_python_runs_the_task_and_is_told_it_is_too_old(
    bare_path: Path, tmp_path: Path
) -> None:
    # Every provision module is imported: a 3.9-only construct fails here, not on a node.
    payload = _run_on_python_38(tmp_path, _params(tmp_path, tmp_path, check=True))
    python = _by_name(payload, "python")
    assert python["status"] == "failed" and "set `provision_python`" in python["message"]
    assert _by_name(payload, "venv")["status"] == "skipped"


def _run_on_python_38(tmp_path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The task's payload from the shipped runtime run by Python 3.8, as on an old node."""
    runtime = tmp_path / "runtime"
    if not runtime.exists():
        zipfile.ZipFile(io.BytesIO(build_runtime().archive)).extractall(runtime)
    done = subprocess.run(
        [str(PYTHON_38), "-S", str(runtime), "provision", json.dumps(raw)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    payload = read_payload(done.stdout)
    assert payload is not None, done.stdout + done.stderr
    return payload


def test_no_package_manager_fails_fio_with_what_to_do(bare_path: Path, tmp_path: Path) -> None:
    payload, _ = _run(_params(tmp_path, tmp_path, check=True))
    fio = _by_name(payload, "fio")
    assert fio["status"] == "failed" and "no package manager was found" in fio["message"]
    assert payload["package_manager"] is None


def test_sudo_wanting_a_password_is_one_line_and_skips_what_needs_root(
    bare_path: Path, tmp_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    _tool(bare_path, "sudo", "echo 'sudo: a password is required' >&2; exit 1")
    _tool(bare_path, "apt-get", "exit 0")
    _tool(bare_path, "nvidia-smi", "echo Disabled; echo Enabled")
    raw = {**_params(tmp_path, wheelhouse, become=True), "venv": str(provisioned.venv)}
    payload, updates = _run(raw, euid=USER)
    sudo = _by_name(payload, "sudo")
    assert sudo == {
        "name": "sudo", "status": "failed", "commands": [["sudo", "-n", "true"]],
        "message": f"sudo wants a password for user {USER} on this host: "
        "allow NOPASSWD for dcctl's commands or connect as root",
    }  # fmt: skip
    assert [entry["name"] for entry in payload["steps"]] == ["python", "sudo", *STEPS[1:]]
    for name in ("fio", "persistence"):
        assert _by_name(payload, name)["status"] == "skipped"
        assert _by_name(payload, name)["message"] == "needs root: sudo failed"
    # What needs no root still runs: the venv is this user's, the scratch dir's parent too.
    assert _statuses(payload)["packages"] == "ok"
    assert _statuses(payload)["scratch"] == "changed"
    assert updates[1] == {"step": "sudo", "phase": "start"}


def test_without_become_a_user_is_told_to_use_it(bare_path: Path, tmp_path: Path) -> None:
    _tool(bare_path, "dnf", "exit 0")
    payload, _ = _run(_params(tmp_path, tmp_path, check=True), euid=USER)
    fio = _by_name(payload, "fio")
    assert fio["status"] == "failed"
    assert "needs root" in fio["message"] and "--become" in fio["message"]
    assert "sudo" not in _statuses(payload)


def test_persistence_is_turned_on_when_a_gpu_has_it_off(bare_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "nvidia-smi.log"
    _tool(bare_path, "nvidia-smi", f'echo "$*" >> {log}; [ "$1" = -pm ] || echo Disabled')
    entry = persistence_step(Privilege(ROOT, "root", become=False), check=False)
    assert entry["status"] == "changed"
    assert entry["message"] == "turned persistence mode on (1 of 1 GPU(s) were off)"
    assert entry["commands"][-1] == ["nvidia-smi", "-pm", "1"]
    assert log.read_text().splitlines()[-1] == "-pm 1"


def test_with_working_sudo_privileged_commands_go_through_it(
    bare_path: Path, tmp_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    calls = tmp_path / "sudo.log"
    _tool(
        bare_path,
        "sudo",
        f'echo "$*" >> {calls}; shift; exec /usr/bin/env PATH="$PATH:/usr/bin:/bin" "$@"',
    )
    _tool(
        bare_path,
        "apt-get",
        f'[ "$DEBIAN_FRONTEND" = noninteractive ] && printf "" > {bare_path}/fio'
        f" && chmod +x {bare_path}/fio",
    )
    raw = {**_params(tmp_path, wheelhouse, become=True), "venv": str(provisioned.venv)}
    payload, _ = _run(raw, euid=USER)
    assert _statuses(payload)["sudo"] == "ok"
    fio = _by_name(payload, "fio")
    assert fio["status"] == "changed" and fio["message"] == "installed fio with apt-get"
    want = ["sudo", "-n", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "fio"]
    assert fio["commands"] == [want]
    assert calls.read_text().splitlines() == ["-n true", " ".join(want[1:])]


def test_persistence_already_on_is_ok_and_no_gpu_is_skipped(
    bare_path: Path, tmp_path: Path
) -> None:
    _tool(bare_path, "nvidia-smi", "echo Enabled; echo Enabled")
    payload, _ = _run(_params(tmp_path, tmp_path, check=True))
    assert _by_name(payload, "persistence")["status"] == "ok"
    _tool(bare_path, "nvidia-smi", "echo 'No devices were found'; exit 6")
    payload, _ = _run(_params(tmp_path, tmp_path, check=True))
    assert _by_name(payload, "persistence")["message"] == "nvidia-smi finds no GPU"


def test_a_failed_venv_skips_packages(bare_path: Path, tmp_path: Path) -> None:
    venv = tmp_path / "broken"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /gone\n")
    _tool(venv / "bin", "python", "echo 'cannot execute: no such base interpreter' >&2; exit 127")
    payload, _ = _run({**_params(tmp_path, tmp_path), "venv": str(venv)})
    assert _by_name(payload, "venv")["status"] == "failed"
    assert "no such base interpreter" in _by_name(payload, "venv")["message"]
    assert _by_name(payload, "packages") == {
        "name": "packages", "status": "skipped", "message": "no usable venv (see venv)",
        "commands": [],
    }  # fmt: skip
    assert payload["venv_python"] is None


def _usr_like(root: Path) -> Path:
    """A directory like /usr: bin/python runs, pip included, but it is no venv."""
    usr = root / "usr"
    (usr / "bin").mkdir(parents=True)
    (usr / "bin" / "python").symlink_to(sys.executable)
    (usr / "lib").mkdir()
    return usr


@pytest.mark.parametrize("check", [True, False])
def test_a_directory_that_is_no_venv_is_refused_never_installed_into(
    bare_path: Path, tmp_path: Path, wheelhouse: Path, check: bool
) -> None:
    usr = _usr_like(tmp_path)
    before = _tree(usr)
    payload, _ = _run({**_params(tmp_path, wheelhouse, check=check), "venv": str(usr)})
    assert _tree(usr) == before
    assert _by_name(payload, "venv") == {
        "name": "venv", "status": "failed", "commands": [],
        "message": f"{usr} exists and is not a venv (no pyvenv.cfg): choose another runtime_venv",
    }  # fmt: skip
    assert _by_name(payload, "packages")["status"] == "skipped"
    assert payload["venv_python"] is None
    ran = [argv for entry in payload["steps"] for argv in entry["commands"]]
    assert not [argv for argv in ran if "venv" in argv or "install" in argv]


def test_an_empty_directory_may_become_the_venv(bare_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    payload, _ = _run({**_params(tmp_path, tmp_path, check=True), "venv": str(empty)})
    venv = _by_name(payload, "venv")
    assert venv["status"] == "changed" and venv["message"].startswith("would create a venv")
    assert venv["commands"] == [[sys.executable, "-m", "venv", str(empty)]]


@needs_python_38
def test_an_old_host_python_with_a_working_venv_is_ok(
    bare_path: Path, tmp_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    raw = {**_params(tmp_path, wheelhouse, check=True), "venv": str(provisioned.venv)}
    payload = _run_on_python_38(tmp_path, raw)
    python = _by_name(payload, "python")
    assert python["status"] == "ok"
    assert python["message"].startswith("the venv is there and its python runs: Python 3.")
    assert python["message"].endswith(f" at {provisioned.venv}/bin/python")
    assert _statuses(payload)["venv"] == _statuses(payload)["packages"] == "ok"
    assert payload["venv_python"] == str(provisioned.venv / "bin" / "python")


@needs_python_38
def test_provision_python_makes_the_venv_when_the_host_python_is_old(
    bare_path: Path, tmp_path: Path, wheelhouse: Path
) -> None:
    raw = {**_params(tmp_path, wheelhouse, check=True), "python": sys.executable}
    payload = _run_on_python_38(tmp_path, raw)
    assert _by_name(payload, "python")["status"] == "ok"
    venv = _by_name(payload, "venv")
    assert venv["status"] == "changed"
    assert venv["commands"] == [[sys.executable, "-m", "venv", raw["venv"]]]


# --- single steps --------------------------------------------------------------------------


def test_a_command_past_its_timeout_is_killed_and_says_so() -> None:
    outcome = run_command(["sleep", "30"], 0.2)
    assert outcome.timed_out and not outcome.ok
    assert outcome.why() == "sleep did not finish within 0.2 s: killed"
    missing = run_command(["/nonexistent/apt-get"], 5)
    assert missing.why() == "cannot run /nonexistent/apt-get: No such file or directory"


def test_python_older_than_3_9_fails_with_what_to_set() -> None:
    entry = python_step(Maker("/usr/bin/python3", (3, 8, 10)))
    assert entry["status"] == "failed"
    assert entry["message"] == (
        "python 3.8.10 at /usr/bin/python3: provision needs >= 3.9 to make the venv; "
        "set `provision_python` for the host to a Python >= 3.9 on it"
    )
    assert python_step(Maker("/x", (3, 9, 0)))["status"] == "ok"
    # A venv that is there and works needs nothing made: the maker is not even asked.
    working = python_step(None, "Python 3.11, pip 24.0 at /v/bin/python")
    assert working["status"] == "ok"
    assert working["message"] == (
        "the venv is there and its python runs: Python 3.11, pip 24.0 at /v/bin/python"
    )


def test_provision_python_is_asked_for_its_version(tmp_path: Path) -> None:
    maker = find_maker(sys.executable)
    assert maker.ok and maker.version == tuple(sys.version_info[:3])
    assert maker.commands[0][:2] == (sys.executable, "-I")
    missing = find_maker(str(tmp_path / "python3.11"))
    assert not missing.ok
    entry = python_step(missing)
    assert entry["status"] == "failed"
    assert entry["message"].startswith(f"provision_python {tmp_path}/python3.11 does not run: ")


def test_requirements_are_decided_with_importlib_metadata_and_markers(
    provisioned: Provisioned, wheelhouse: Path
) -> None:
    python = str(provisioned.venv / "bin" / "python")
    state = VenvState(python, usable=True, would_create=False, as_root=False)
    packages = ["nvidia-ml-py>=12", "extra-pkg", "never-needed; python_version < '3'"]
    raw = _params(provisioned.root, wheelhouse, packages=packages)
    params = parse_params({**raw, "torch_spec": "faketorch>=2"})
    unmet = to_install(state, params)
    assert unmet.outcome.argv[1:3] == ["-I", "-c"]
    assert unmet.missing == ["faketorch>=2 (1.0 installed)", "extra-pkg"]


def test_an_invalid_requirement_is_one_clear_line(
    bare_path: Path, provisioned: Provisioned, wheelhouse: Path
) -> None:
    raw = {**_params(provisioned.root, wheelhouse, check=True), "packages": ["extra-pkg>=1,,2"]}
    packages = _by_name(_run(raw)[0], "packages")
    assert packages["status"] == "failed"
    assert packages["message"].startswith("extra-pkg>=1,,2 is not a pip requirement: ")
    assert "~" not in packages["message"] and "Traceback" not in packages["message"]
    state = VenvState(str(provisioned.venv / "bin" / "python"), True, False, False)
    params = parse_params(raw)
    entry = packages_step(params, state, BuildChoice("cpu", ""), Privilege(ROOT, "root", False))
    assert entry == packages


def test_index_arguments_follow_wheelhouse_then_mirror_then_build(tmp_path: Path) -> None:
    cu124 = BuildChoice("cu124", "the driver's CUDA 12.4 runs torch's cu124 build")
    wheel = parse_params({"wheelhouse": "/w", "pip_index_url": "https://m/simple"})
    assert index_args(wheel, cu124)[0] == ["--no-index", "--find-links", "/w"]
    mirror = parse_params({"pip_index_url": "https://m/simple"})
    assert index_args(mirror, cu124)[0] == ["--index-url", "https://m/simple"]
    args, why = index_args(parse_params({}), cu124)
    assert args == ["--extra-index-url", "https://download.pytorch.org/whl/cu124"]
    assert why.startswith("torch build cu124: the driver's CUDA 12.4")
    assert index_args(parse_params({}), BuildChoice(None, "too old"))[0] is None


def test_scratch_refuses_unsafe_directories(tmp_path: Path) -> None:
    root = Privilege(ROOT, "root", become=False)
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(target)
    assert scratch_step(str(target), root, check=False)["status"] == "ok"
    link = scratch_step(str(tmp_path / "link"), root, check=False)
    assert link["status"] == "failed" and "is a symlink" in link["message"]
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    wide = scratch_step(str(open_dir), root, check=False)
    assert wide["status"] == "failed" and "without the sticky bit" in wide["message"]
    open_dir.chmod(0o1777)
    assert scratch_step(str(open_dir), root, check=False)["status"] == "ok"
    (tmp_path / "file").write_text("")
    assert scratch_step(str(tmp_path / "file"), root, check=False)["status"] == "failed"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"check": "yes"}, "check must be true or false"),
        ({"venv": "relative/venv"}, "venv must be an absolute path"),
        ({"venv": "/"}, "venv must be an absolute path"),
        ({"venv": "//"}, "venv must be an absolute path other than /"),
        ({"venv": "/a/x/../v"}, "without . or .. parts"),
        ({"wheelhouse": "/w/./x"}, "without . or .. parts"),
        ({"scratch_dir": "/var/tmp/.."}, "without . or .. parts"),
        ({"python": "--version"}, "python must be a non-empty string"),
        ({"torch_spec": "--index-url=http://evil"}, "torch_spec must be a pip requirement"),
        ({"packages": "nvidia-ml-py"}, "packages must be a list of strings"),
        ({"pip_extra_args": "--pre"}, "pip_extra_args must be a list of strings"),
        ({"wheelhouse": "wheels"}, "wheelhouse must be an absolute path"),
        ({"keep_runtime": "abc"}, "keep_runtime must be 16 hex digits"),
        ({"scratch_dir": 3}, "scratch_dir must be an absolute path"),
    ],
)
def test_bad_params_are_refused_before_anything_runs(raw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TaskParamsError, match=fragment):
        provision_task(raw, euid=ROOT, progress=lambda update: None, read_driver=_no_driver)


def test_defaults_match_the_contract() -> None:
    params = parse_params({"unknown": 1})
    assert params.venv == "/opt/dcctl/venv" and params.torch_spec == "torch>=2.2,<3"
    assert params.packages == ["nvidia-ml-py"] and params.scratch_dir == "/var/tmp/dcctl"
    assert not (params.check or params.become or params.prune)
    assert params.python is None  # the interpreter running the task makes the venv
    assert parse_params({"venv": "//srv//venv/"}).venv == "/srv/venv"


# --- prune ---------------------------------------------------------------------------------

KEEP = "0123456789abcdef"


def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache" / "dcctl"
    monkeypatch.delenv(prune_module.NODE_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in (f"runtime-{KEEP}", "runtime-1111111111111111", "runtime-2222222222222222"):
        (cache / name / "dcctl").mkdir(parents=True)
        (cache / name / "dcctl" / "big.py").write_bytes(b"x" * 1024 * 1024)
    (cache / "runtime-notadigest").mkdir()
    (cache / "runtime-ABCDEF0123456789").mkdir()  # upper case: not a name dcctl makes
    (cache / "fio-version.json").write_text("{}")
    (cache / "notes").mkdir()
    old, young = cache / ".runtime-old1", cache / ".runtime-new1"
    old.mkdir()
    young.mkdir()
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    return cache


def test_prune_removes_only_old_runtimes_and_stale_uploads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = _cache(tmp_path, monkeypatch)
    before = sorted(os.listdir(cache))
    would = prune_module.prune_step(KEEP, check=True)
    assert sorted(os.listdir(cache)) == before
    assert would["status"] == "changed"
    assert would["message"].startswith("would remove 2 old runtime(s) and 1 unfinished upload(s)")
    done = prune_module.prune_step(KEEP, check=False)
    assert done["status"] == "changed"
    assert done["message"].startswith(
        "removed 2 old runtime(s) and 1 unfinished upload(s), 2.0 MiB"
    )
    assert sorted(os.listdir(cache)) == [
        ".runtime-new1", "fio-version.json", "notes", f"runtime-{KEEP}",
        "runtime-ABCDEF0123456789", "runtime-notadigest",
    ]  # fmt: skip
    again = prune_module.prune_step(KEEP, check=False)
    assert again["status"] == "ok" and again["message"].startswith("nothing to prune")


def test_prune_follows_the_run_scripts_cache_and_never_a_link_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "elsewhere"
    cache.mkdir()
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    (cache / "runtime-3333333333333333").symlink_to(target)
    monkeypatch.setenv(prune_module.NODE_CACHE_ENV, str(cache))
    assert prune_module.prune_step(None, check=False)["status"] == "changed"
    assert os.listdir(cache) == [] and (target / "keep.txt").exists()


def test_prune_of_a_missing_cache_is_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(prune_module.NODE_CACHE_ENV, str(tmp_path / "none"))
    assert prune_module.prune_step(KEEP, check=False)["status"] == "ok"


def test_prune_counts_what_a_concurrent_prune_removed_first_as_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes sharing an NFS home prune the same cache: whole entries and files inside
    them may vanish between the listing, the sizing and the removal."""
    cache = _cache(tmp_path, monkeypatch)
    listed = prune_module.prunable

    real_unlink = os.unlink

    def unlinked_by_the_other(path: Any, *args: Any, **kwargs: Any) -> None:
        real_unlink(path, *args, **kwargs)  # the other prune got there first...
        raise FileNotFoundError(2, "No such file or directory", path)  # ...and we see ENOENT

    def other_prune_first(*args: Any) -> list[str]:
        names = listed(*args)
        shutil.rmtree(cache / "runtime-1111111111111111")  # gone before it is sized
        monkeypatch.setattr(os, "unlink", unlinked_by_the_other)  # the rest: file by file
        return names

    monkeypatch.setattr(prune_module, "prunable", other_prune_first)
    done = prune_module.prune_step(KEEP, check=False)
    monkeypatch.undo()
    assert done["status"] == "changed", done
    assert done["message"].startswith(
        "removed 2 old runtime(s) and 1 unfinished upload(s), 1.0 MiB"
    )
    assert not (cache / "runtime-2222222222222222").exists()
    assert (cache / f"runtime-{KEEP}").is_dir()
