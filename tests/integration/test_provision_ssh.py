"""`dcctl provision` end to end over real OpenSSH servers on loopback: real venvs, real pip
installing from a wheelhouse built here (a `faketorch` wheel stands in for torch through
`torch_spec`), never the network.

The acceptance runs once for the module (the venvs take most of its time) and each test
reads its part: `provision --check` (a plan; nothing on disk changes), `provision` (the
changes), `provision` again (all ok), then `bench gemm --quick` runs the recorded venv's
python on a host whose inventory names none, while an explicit `python` wins. Later tests
reuse the provisioned hosts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_runner import DcctlResult, run_dcctl
from sshlab import Sshd, SshLab, write_inventory

from dcctl.fleet.runtime import build_runtime

# The node's PATH for the lab hosts: python3 is the system one, as on a fresh node.
NODE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
NAMES = ("node1", "node2")


def build_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel by hand: the package's files and a dist-info pip accepts."""
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    contents = dict(files)
    contents[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    contents[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: dcctl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = []
    for path, text in contents.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={encoded},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def tree(root: Path) -> list[tuple[str, int, int, int]]:
    """Every path under `root` with its mode, size and mtime: what a change would show in."""
    listing = []
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        listing.append((str(path.relative_to(root)), info.st_mode, info.st_size, info.st_mtime_ns))
    return listing


@dataclass
class Lab:
    root: Path
    state: Path
    home: Path
    hosts: list[dict[str, Any]]

    def venv(self, name: str) -> Path:
        return self.root / "nodes" / name / "venv"

    def cache(self, name: str) -> Path:
        return self.root / "caches" / name

    def inventory(self, file_name: str, hosts: list[dict[str, Any]] | None = None) -> Path:
        return write_inventory(self.root / file_name, hosts or self.hosts)

    def dcctl(self, inventory: Path, *args: str) -> DcctlResult:
        return run_dcctl(
            ["-i", str(inventory), "--state-dir", str(self.state), "--connect-timeout", "5",
             "--json", *args],
            home=self.home,
            timeout=180,
        )  # fmt: skip


def steps_of(result: DcctlResult) -> dict[str, dict[str, dict[str, Any]]]:
    """host -> step name -> step, from a `--json` provision document."""
    return {
        host["name"]: {step["name"]: step for step in host["steps"]}
        for host in result.json()["hosts"]
    }


def statuses(result: DcctlResult) -> dict[str, dict[str, str]]:
    return {
        name: {step: entry["status"] for step, entry in steps.items()}
        for name, steps in steps_of(result).items()
    }


@dataclass
class Acceptance:
    lab: Lab
    check: DcctlResult
    tree_before: list[tuple[str, int, int, int]]
    tree_after_check: list[tuple[str, int, int, int]]
    records_after_check: bool
    first: DcctlResult
    second: DcctlResult


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
    ssh_lab: SshLab,
    healthy_sshd: Sshd,
    lab_known_hosts: Path,
) -> Lab:
    root = tmp_path_factory.mktemp("provision")
    wheels = root / "wheels"
    wheels.mkdir()
    build_wheel(wheels, "faketorch", "1.0", {"faketorch/__init__.py": "__version__ = '1.0'\n"})
    build_wheel(wheels, "nvidia-ml-py", "12.535.161", {"nvidia_ml_py_stub.py": "\n"})
    (root / "nodes").mkdir()
    state = root / "state"
    state.mkdir()
    shutil.copy(lab_known_hosts, state / "known_hosts")
    hosts = []
    for name, address in zip(NAMES, healthy_sshd.addresses, strict=False):
        # No `python`: provision runs the node's python3, bench the venv it records.
        hosts.append(
            {
                "name": name,
                **ssh_lab.host_vars(healthy_sshd, address),
                "runtime_venv": str(root / "nodes" / name / "venv"),
                "scratch_dir": str(root / "nodes" / name / "scratch"),
                "wheelhouse": str(wheels),
                "torch_spec": "faketorch==1.0",
                "env": {"PATH": NODE_PATH, "XDG_CACHE_HOME": str(root / "caches" / name)},
            }
        )
    return Lab(root, state, root / "home", hosts)


@pytest.fixture(scope="module")
def acceptance(lab: Lab) -> Acceptance:
    inventory = lab.inventory("inv.yaml")
    nodes = lab.root / "nodes"
    before = tree(nodes)
    check = lab.dcctl(inventory, "provision", "--check")
    after_check = tree(nodes)
    records = (lab.state / "provisioned").exists()
    first = lab.dcctl(inventory, "provision")
    second = lab.dcctl(inventory, "provision")
    return Acceptance(lab, check, before, after_check, records, first, second)


def test_check_shows_the_plan_and_changes_nothing(acceptance: Acceptance) -> None:
    result = acceptance.check
    assert result.code == 0, result.stderr
    document = result.json()
    assert document["command"] == "provision" and document["check"] is True
    for name, found in statuses(result).items():
        assert found == {
            "python": "ok",
            "venv": "changed",
            "packages": "changed",
            "fio": "ok",
            "persistence": "skipped",  # no GPU on this machine
            "scratch": "changed",
        }, name
    packages = steps_of(result)["node1"]["packages"]
    assert "faketorch==1.0" in packages["message"]
    assert document["summary"] == {"hosts": 2, "ok": 0, "changed": 2, "failed": 0, "error": 0}
    assert acceptance.tree_after_check == acceptance.tree_before
    assert not acceptance.records_after_check


def test_provision_makes_the_venvs_and_records_their_python(acceptance: Acceptance) -> None:
    result, lab = acceptance.first, acceptance.lab
    assert result.code == 0, result.stderr
    for name, found in statuses(result).items():
        assert found["venv"] == found["packages"] == found["scratch"] == "changed", name
        assert found["python"] == found["fio"] == "ok", name
    for host in result.json()["hosts"]:
        venv_python = lab.venv(host["name"]) / "bin" / "python"
        assert host["venv_python"] == str(venv_python)
        assert host["torch_build"] is None  # a wheelhouse: no CUDA build chosen
        record = lab.state / "provisioned" / f"{host['name']}.json"
        assert record.stat().st_mode & 0o777 == 0o600
        assert f'"python": "{venv_python}"' in record.read_text()
    site = next((lab.venv("node1") / "lib").glob("python3*/site-packages"))
    assert (site / "faketorch" / "__init__.py").is_file()
    assert (lab.root / "nodes" / "node1" / "scratch").stat().st_mode & 0o777 == 0o700


def test_a_second_run_changes_nothing(acceptance: Acceptance) -> None:
    result = acceptance.second
    assert result.code == 0, result.stderr
    for name, found in statuses(result).items():
        assert set(found.values()) <= {"ok", "skipped"}, (name, found)
    assert result.json()["summary"]["ok"] == 2


def test_bench_runs_the_recorded_python_unless_the_inventory_names_one(
    acceptance: Acceptance,
) -> None:
    lab = acceptance.lab
    explicit = {**lab.hosts[0], "python": "/usr/bin/python3"}
    inventory = lab.inventory("bench.yaml", [explicit, lab.hosts[1]])
    result = lab.dcctl(inventory, "bench", "gemm", "--quick")
    # faketorch is no torch: the preflight errs, naming the interpreter it ran.
    used = {}
    for host in result.json()["hosts"]:
        preflight = next(r for r in host["results"] if r["id"] == "bench.preflight")
        used[host["name"]] = preflight["message"]
    assert "torch cannot be imported by /usr/bin/python3 " in used["node1"]
    assert f"torch cannot be imported by {lab.venv('node2')}/bin/python " in used["node2"]


@dataclass
class LaterRun:
    """One more run on the provisioned hosts: node1 with a PATH whose apt-get fails and no
    fio, both with --become (connected as root) and --prune over planted cache entries."""

    result: DcctlResult
    cache_before: set[str]
    cache_after: set[str]
    current_runtime: str
    apt_log: list[str]


@pytest.fixture(scope="module")
def later_run(acceptance: Acceptance, tmp_path_factory: pytest.TempPathFactory) -> LaterRun:
    lab = acceptance.lab
    fake_bin = tmp_path_factory.mktemp("fakebin")
    # No fio on this PATH, and an apt-get whose install itself fails (a package it cannot
    # fetch: not a missing package list, which the update-and-retry path handles).
    (fake_bin / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {fake_bin}/apt-get.log\n'
        "echo 'E: Failed to fetch http://mirror.invalid/pool/f/fio/fio_3.28_amd64.deb' >&2\n"
        "exit 100\n"
    )
    (fake_bin / "apt-get").chmod(0o755)
    for tool in ("sh", "python3"):
        (fake_bin / tool).symlink_to(shutil.which(tool, path=NODE_PATH) or tool)
    broken = {**lab.hosts[0], "env": {**lab.hosts[0]["env"], "PATH": str(fake_bin)}}
    cache = lab.cache("node1") / "dcctl"
    current = f"runtime-{build_runtime().digest}"
    assert (cache / current).is_dir()
    (cache / "runtime-0123456789abcdef" / "dcctl").mkdir(parents=True)
    (cache / "runtime-0123456789abcdef" / "dcctl" / "x.py").write_text("old\n")
    stale_upload = cache / ".runtime-abc123"
    stale_upload.mkdir()
    hours_ago = time.time() - 7200
    os.utime(stale_upload, (hours_ago, hours_ago))
    (cache / "notes.txt").write_text("a person's file\n")
    (cache / "runtime-notours").mkdir()
    (cache / ".runtime-fresh").mkdir()  # may be an upload in progress
    before = {path.name for path in cache.iterdir()}
    inventory = lab.inventory("later.yaml", [broken, lab.hosts[1]])
    result = lab.dcctl(inventory, "provision", "--become", "--prune")
    after = {path.name for path in cache.iterdir()}
    apt_log = fake_bin / "apt-get.log"
    calls = apt_log.read_text().splitlines() if apt_log.exists() else []
    return LaterRun(result, before, after, current, calls)


def test_a_failing_package_manager_fails_its_host_only(
    acceptance: Acceptance, later_run: LaterRun
) -> None:
    result = later_run.result
    assert result.code == 1, result.stderr
    found = steps_of(result)
    fio = found["node1"]["fio"]
    assert fio["status"] == "failed"
    assert fio["message"] == (
        "apt-get could not install fio: "
        "E: Failed to fetch http://mirror.invalid/pool/f/fio/fio_3.28_amd64.deb"
    )
    assert fio["commands"] == [["apt-get", "install", "-y", "fio"]]  # no update, no retry
    assert later_run.apt_log == ["install -y fio"]
    assert found["node1"]["packages"]["status"] == "ok"
    assert {step["status"] for step in found["node2"].values()} <= {"ok", "skipped"}
    hosts = {host["name"]: host["status"] for host in result.json()["hosts"]}
    assert hosts == {"node1": "failed", "node2": "ok"}
    # The venv is fine: its record stays.
    assert (acceptance.lab.state / "provisioned" / "node1.json").is_file()


def test_become_as_root_needs_no_sudo(later_run: LaterRun) -> None:
    for name, steps in steps_of(later_run.result).items():
        assert "sudo" not in steps or steps["sudo"]["status"] == "skipped", name
        ran = [argv for step in steps.values() for argv in step["commands"]]
        assert ran, name
        assert [argv for argv in ran if argv[0] == "sudo"] == [], name


def test_prune_removes_only_dcctls_old_runtimes(
    acceptance: Acceptance, later_run: LaterRun
) -> None:
    found = steps_of(later_run.result)
    prune = found["node1"]["prune"]
    assert prune["status"] == "changed"
    assert "removed 1 old runtime(s) and 1 unfinished upload(s)" in prune["message"]
    removed = later_run.cache_before - later_run.cache_after
    assert removed == {"runtime-0123456789abcdef", ".runtime-abc123"}
    kept = {later_run.current_runtime, "notes.txt", "runtime-notours", ".runtime-fresh"}
    assert kept <= later_run.cache_after
    assert found["node2"]["prune"]["status"] == "ok"
    assert (acceptance.lab.cache("node2") / "dcctl" / later_run.current_runtime).is_dir()


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("runtime_venv: //", "runtime_venv: expected a directory of its own, got '//'"),
        ("wheelhouse: /srv/x/../w", "wheelhouse: expected a path without . or .. parts"),
        ("torch_spec: torch>=2,,<3", "torch_spec: not a pip requirement: "),
    ],
)
def test_a_bad_provision_variable_is_one_line_and_exit_2(
    lab: Lab, variable: str, problem: str
) -> None:
    inventory = lab.root / "bad.yaml"
    inventory.write_text(f"all:\n  hosts:\n    node1:\n      {variable}\n")
    result = lab.dcctl(inventory, "provision", "--check")
    assert result.code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"bad.yaml:4: {problem}" in lines[0], result.stderr
