"""The controller's reading of a `provision` payload: per-host status, what is recorded, the
exit code, the table and the node task's parameters."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from dcctl.cli.provision import (
    PACKAGES,
    TORCH_INDEX_BASE,
    ProvisionSettings,
    progress_line,
    task_params,
)
from dcctl.cli.provision_run import _Records
from dcctl.evaluate.provision import host_provision, provision_exit_code, tally
from dcctl.fleet.outcome import HostOutcome
from dcctl.inventory.model import Host
from dcctl.report.provision_table import provision_table, summary_line
from dcctl.results.provisioned import new_record, read_record, write_record
from dcctl.transport.base import HostError

HOST = Host(name="gpu1", address="10.0.0.1")


def step(name: str, status: str, message: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "message": message or f"{name} {status}", **extra}


def payload(**statuses: str) -> dict[str, Any]:
    return {
        "steps": [step(name, status) for name, status in statuses.items()],
        "venv_python": "/opt/dcctl/venv/bin/python",
        "cuda_driver": "12.4",
        "torch_build": "cu124",
        "package_manager": "apt-get",
        "check": False,
    }


def landed(data: dict[str, Any] | None, error: HostError | None = None) -> Any:
    return host_provision(HostOutcome(HOST, data, error, 1.5))


def test_a_host_is_as_bad_as_its_worst_step() -> None:
    assert landed(payload(python="ok", venv="ok", packages="ok")).status == "ok"
    assert landed(payload(venv="changed", packages="ok", persistence="skipped")).status == (
        "changed"
    )
    assert landed(payload(venv="changed", fio="failed")).status == "failed"


@pytest.mark.parametrize(
    ("statuses", "usable"),
    [
        ({"venv": "ok", "packages": "changed", "fio": "failed"}, True),
        ({"venv": "failed", "packages": "skipped"}, False),
        ({"venv": "ok", "packages": "failed"}, False),
        ({"venv": "ok"}, False),  # no packages step: torch was never checked
    ],
)
def test_the_venv_is_recorded_only_when_venv_and_packages_are_in_place(
    statuses: dict[str, str], usable: bool
) -> None:
    assert landed(payload(**statuses)).venv_usable is usable


def test_an_unreachable_host_is_an_error_and_never_usable() -> None:
    result = landed(None, HostError("unreachable", "connection refused"))
    assert result.status == "error"
    assert result.error == {"kind": "unreachable", "message": "connection refused"}
    assert not result.venv_usable
    assert result.as_json()["steps"] == []


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({}, "no list of steps"),
        ({"steps": "all fine"}, "no list of steps"),
        ({"steps": [step("venv", "great")]}, "step 'venv' has status 'great'"),
        ({"steps": [{"status": "ok", "message": ""}]}, "a step has no name"),
        ({"steps": [step("venv", "ok")], "venv_python": "bin/python"}, "venv_python"),
        ({"steps": [step("venv", "ok")] * 40}, "40 steps"),
    ],
)
def test_a_payload_of_another_shape_is_a_runtime_error(data: dict[str, Any], problem: str) -> None:
    result = landed(data)
    assert result.status == "error"
    assert result.error is not None and result.error["kind"] == "runtime"
    assert problem in result.error["message"]


def test_node_text_reaches_the_table_as_one_printable_line() -> None:
    data = payload(venv="ok")
    data["steps"][0]["message"] = "venv \x1b[31mred\x1b[0m\nsecond line"
    data["steps"][0]["commands"] = [["pip", "install", "x\x1b"], "not argv", [1, 2]]
    [venv] = landed(data).steps
    assert venv.message == "venv [31mred [0m second line"
    assert venv.commands == (("pip", "install", "x"),)


def test_exit_codes_failed_over_unreachable_over_unsaved() -> None:
    failed, ok = landed(payload(fio="failed")), landed(payload(fio="ok"))
    error = landed(None, HostError("timeout", "slow"))
    assert provision_exit_code(tally([ok]), saved=True) == 0
    assert provision_exit_code(tally([ok]), saved=False) == 4
    assert provision_exit_code(tally([ok, error]), saved=False) == 3
    assert provision_exit_code(tally([failed, error]), saved=False) == 1


def render(*args: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200).print(provision_table(*args))
    return out.getvalue()


def test_the_table_says_would_change_in_a_check_and_quiet_shows_only_problems() -> None:
    results = [landed(payload(venv="changed", fio="failed", scratch="ok"))]
    check = render(results, True, False, False)
    assert "would change" in check and "venv changed" in check
    quiet = render(results, False, True, False)
    assert "fio failed" in quiet and "venv changed" not in quiet and "scratch" not in quiet
    counts = tally(results)
    assert summary_line(counts, check=True) == "1 host(s): 0 ok, 0 would change, 1 failed"
    error = landed(None, HostError("auth", "denied"))
    assert summary_line(tally([*results, error]), check=False) == (
        "2 host(s): 0 ok, 0 changed, 1 failed, 1 error"
    )


def test_verbose_shows_the_commands_each_step_ran() -> None:
    data = payload(fio="changed")
    data["steps"][0]["commands"] = [["apt-get", "install", "-y", "fio"]]
    assert "$ apt-get install -y fio" in render([landed(data)], False, False, True)


def test_progress_lines_name_the_step_as_a_label() -> None:
    assert progress_line({"step": "packages", "phase": "start"}) == {"provision": "packages"}
    assert progress_line({"step": 3, "of": 5}) == {"step": 3, "of": 5}


def test_task_params_follow_the_contract() -> None:
    host = Host(
        name="gpu1",
        address="10.0.0.1",
        runtime_venv="/srv/venv",
        torch_spec="torch==2.4.1",
        pip_extra_args=("--no-cache-dir",),
        wheelhouse="/srv/wheels",
        scratch_dir="/scratch",
        provision_python="/usr/bin/python3.11",
    )
    settings = ProvisionSettings(check=True, become=True, prune=False, timeout_s=60.0)
    assert task_params(host, settings, "0123456789abcdef") == {
        "check": True,
        "become": True,
        "venv": "/srv/venv",
        "torch_spec": "torch==2.4.1",
        "packages": list(PACKAGES),
        "pip_index_url": None,
        "pip_extra_args": ["--no-cache-dir"],
        "wheelhouse": "/srv/wheels",
        "torch_index_base": TORCH_INDEX_BASE,
        "scratch_dir": "/scratch",
        "prune": False,
        "keep_runtime": "0123456789abcdef",
        "python": "/usr/bin/python3.11",
    }


@pytest.mark.parametrize(
    ("statuses", "venv_python", "kept"),
    [
        # A mirror outage: the venv works, its packages could not be installed or checked.
        ({"venv": "ok", "packages": "failed"}, "/opt/dcctl/venv/bin/python", True),
        ({"venv": "failed", "packages": "skipped"}, None, False),
        ({"python": "failed", "venv": "skipped", "packages": "skipped"}, None, False),
    ],
)
def test_the_record_goes_only_when_the_venv_is_not_usable_after_the_run(
    tmp_path: Path, statuses: dict[str, str], venv_python: str | None, kept: bool
) -> None:
    record = new_record(HOST, "/opt/dcctl/venv/bin/python")
    write_record(tmp_path, HOST.name, record)
    records = _Records(tmp_path, enabled=True)
    records.keep(HOST, landed({**payload(**statuses), "venv_python": venv_python}))
    assert records.errors == []
    assert (read_record(tmp_path, HOST.name) == record) is kept
    if not kept:
        assert read_record(tmp_path, HOST.name) is None
