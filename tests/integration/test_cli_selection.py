"""A selection of no host is a usage error (exit 2), never a green run that checked nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import run_dcctl

GPU_RACK = "all:\n  hosts:\n    gpu01:\n    gpu02:\n  children:\n    spare:\n"


def write_inventory(tmp_path: Path, text: str) -> Path:
    inventory = tmp_path / "inventories" / "x.yaml"
    inventory.parent.mkdir(parents=True, exist_ok=True)
    inventory.write_text(text, encoding="utf-8")
    return inventory


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    [line] = stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("command", [["check"], ["inventory", "hosts"], ["inventory", "show"]])
@pytest.mark.parametrize("limit", ["!gpu*", "spare", "gpu01,&spare"])
def test_limit_that_excludes_every_host_is_exit_2(
    tmp_path: Path, limit: str, command: list[str]
) -> None:
    inventory = write_inventory(tmp_path, GPU_RACK)
    state = tmp_path / "state"
    args = ["-i", str(inventory), "-l", limit, "--state-dir", str(state), *command]
    result = run_dcctl(args, home=tmp_path)
    assert result.code == 2, result.stdout + result.stderr
    line = one_error_line(result.stderr)
    assert line == f"dcctl: error: --limit '{limit}' selects no host of {inventory}"
    assert not (state / "runs").exists()  # nothing ran, nothing was recorded


@pytest.mark.parametrize("limit", ["", " ", ","])
def test_limit_with_no_terms_is_exit_2_not_every_host(tmp_path: Path, limit: str) -> None:
    inventory = write_inventory(tmp_path, GPU_RACK)
    state = tmp_path / "state"
    args = ["-i", str(inventory), "-l", limit, "--state-dir", str(state), "check"]
    result = run_dcctl(args, home=tmp_path)
    assert result.code == 2
    line = one_error_line(result.stderr)
    assert line == f"dcctl: error: --limit '{limit}' names no host or group; leave it out " \
        "for every host"  # fmt: skip
    assert not (state / "runs").exists()


@pytest.mark.parametrize(
    "text",
    ["all:\n  children:\n    rack1:\n      hosts: {}\n", "all:\n  vars: {user: root}\n", "all:\n"],
)
def test_inventory_without_hosts_is_exit_2_for_check(tmp_path: Path, text: str) -> None:
    inventory = write_inventory(tmp_path, text)
    state = tmp_path / "state"
    result = run_dcctl(["-i", str(inventory), "--state-dir", str(state), "check"], home=tmp_path)
    assert result.code == 2
    line = one_error_line(result.stderr)
    assert line == f"dcctl: error: {inventory}: the inventory defines no hosts"
    assert not (state / "runs").exists()


def test_excluding_some_hosts_still_runs_the_rest(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, GPU_RACK)
    result = run_dcctl(["-i", str(inventory), "-l", "!gpu01", "inventory", "hosts"], home=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout.split() == ["gpu02"]
