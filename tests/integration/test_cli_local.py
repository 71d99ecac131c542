"""The command line on this machine: built-in localhost inventory, input errors, start-up cost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from cli_runner import load_schema, run_dcctl

REPO = Path(__file__).parents[2]


def test_check_without_inventory_checks_localhost(tmp_path: Path) -> None:
    result = run_dcctl(["--state-dir", str(tmp_path / "state"), "check"], home=tmp_path)
    assert result.code == 0, result.stderr
    assert "localhost" in result.stdout
    assert "passed" in result.stdout
    assert "1 host(s): 1 passed" in result.stdout


def test_json_check_is_only_the_schema_valid_document(tmp_path: Path) -> None:
    result = run_dcctl(["--json", "--state-dir", str(tmp_path / "s"), "check"], home=tmp_path)
    assert result.code == 0, result.stderr
    document = result.json()  # stdout parses whole: nothing else was printed there
    jsonschema.validate(document, load_schema())
    (host,) = document["hosts"]
    assert host["name"] == "localhost"
    assert host["facts"]["kernel"]
    gpu = next(r for r in host["results"] if r["id"] == "gpu.present")
    assert gpu["status"] == "skip"


def test_driver_expected_on_a_machine_without_one_fails(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  hosts:\n    localhost:\n      connection: local\n"
        f"      python: {sys.executable}\n      expect: {{driver: '>=550'}}\n"
    )
    result = run_dcctl(
        ["-i", str(inventory), "--json", "--state-dir", str(tmp_path / "s"), "check"],
        home=tmp_path,
    )
    assert result.code == 1, result.stderr
    driver = next(r for r in result.json()["hosts"][0]["results"] if r["id"] == "driver.version")
    assert driver["status"] == "fail"
    assert "NVIDIA driver not loaded" in driver["message"]


BAD_INVENTORIES = {
    "invalid-yaml": ("all:\n  hosts: [unclosed\n", "invalid.yaml:"),
    "unknown-expect-key": (
        "all:\n  vars:\n    expect:\n      drivr: '>=550'\n  hosts:\n    a:\n",
        "did you mean 'driver'",
    ),
    "malformed-range": ("all:\n  hosts:\n    gpu[05:01]:\n", "gpu[05:01]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INVENTORIES))
def test_bad_inventory_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    text, expected = BAD_INVENTORIES[case]
    inventory = tmp_path / ("invalid.yaml" if case == "invalid-yaml" else f"{case}.yaml")
    inventory.write_text(text)
    result = run_dcctl(["-i", str(inventory), "check"], home=tmp_path)
    assert result.code == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(inventory) in lines[0] or inventory.name in lines[0]
    assert expected in lines[0]
    assert not (tmp_path / ".local" / "state" / "dcctl" / "runs").exists()


def test_unknown_limit_group_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_dcctl(["-l", "rackx", "inventory", "hosts"], home=tmp_path)
    assert result.code == 2
    assert "rackx" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_inventory_commands_on_the_example_rack(tmp_path: Path) -> None:
    example = str(REPO / "inventories" / "example-rack.yaml")
    validate = run_dcctl(["-i", example, "inventory", "validate"], home=tmp_path)
    assert validate.code == 0, validate.stderr
    assert "valid" in validate.stdout
    hosts = run_dcctl(["-i", example, "--json", "inventory", "hosts"], home=tmp_path)
    assert hosts.code == 0
    names = hosts.json()
    assert isinstance(names, list) and len(names) > 2
    first_two = run_dcctl(["-i", example, "-l", names[0], "inventory", "hosts"], home=tmp_path)
    assert first_two.stdout.split() == [names[0]]


def test_help_imports_no_ssh_torch_or_nvml() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dcctl", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "Examples" in proc.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()}
    assert "typer" in imported
    assert not imported & {"paramiko", "torch", "pynvml"}


def local_inventory(tmp_path: Path, sysroot: Path, expect: str = "{}") -> Path:
    inventory = tmp_path / "inv.yaml"
    inventory.write_text(
        "all:\n  hosts:\n    recorded:\n      connection: local\n"
        f"      python: {sys.executable}\n      env: {{DCCTL_SYSROOT: '{sysroot}'}}\n"
        f"      expect: {expect}\n"
    )
    return inventory


def test_node_strings_are_shown_verbatim_never_as_markup(tmp_path: Path) -> None:
    sysroot = tmp_path / "node"
    (sysroot / "etc").mkdir(parents=True)
    (sysroot / "etc" / "os-release").write_text('PRETTY_NAME="Evil [/] OS [red]x"\n')
    inventory = local_inventory(tmp_path, sysroot)
    result = run_dcctl(["-i", str(inventory), "--state-dir", str(tmp_path / "s"), "check"],
                       home=tmp_path, env={"COLUMNS": "250"})  # fmt: skip
    assert result.code == 0, result.stderr
    assert "Evil [/] OS [red]x" in result.stdout


def test_a_check_that_cannot_be_judged_is_not_a_pass(tmp_path: Path) -> None:
    sysroot = tmp_path / "node"
    (sysroot / "proc" / "meminfo").mkdir(parents=True)  # unreadable as a file
    inventory = local_inventory(tmp_path, sysroot, expect="{min_memory_gb: 1}")
    result = run_dcctl(
        ["-i", str(inventory), "--json", "--state-dir", str(tmp_path / "s"), "check"],
        home=tmp_path,
    )
    assert result.code == 3, result.stderr
    (host,) = result.json()["hosts"]
    assert host["status"] == "error"
    assert host["error"]["kind"] == "runtime"
    assert "could not be evaluated" in host["error"]["message"]


def test_host_dcctl_cannot_reach_is_an_inventory_error_and_never_contacted(
    tmp_path: Path,
) -> None:
    """A docker host beside a real one: the file loads, the real host is checked, and the other
    is reported with the inventory line that makes it unusable, without a connection attempt."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        inventory = tmp_path / "inv.yaml"
        inventory.write_text(
            "all:\n  hosts:\n    localhost:\n      connection: local\n"
            f"      python: {sys.executable}\n"
            f"    box1:\n      ansible_connection: docker\n"
            f"      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"
        )
        result = run_dcctl(
            ["-i", str(inventory), "--json", "--state-dir", str(tmp_path / "s"), "check"],
            home=tmp_path,
        )
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    assert result.code == 3, result.stderr
    document = result.json()
    jsonschema.validate(document, load_schema())
    statuses = {host["name"]: (host["status"], host["error"]) for host in document["hosts"]}
    assert statuses["localhost"] == ("passed", None)
    assert statuses["box1"] == (
        "error",
        {
            "kind": "inventory",
            "message": f"{inventory}:7: ansible_connection: expected 'ssh' or 'local', "
            "got 'docker'",
        },
    )
