"""The record `dcctl provision` keeps per host (`<state>/provisioned/<host>.json`) and how a
run's bench and certify steps pick the recorded python up, while check keeps the inventory's."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, cast

import pytest

from dcctl.inventory.model import DEFAULT_PYTHON, Host
from dcctl.playbook.model import Playbook, PlaybookStep, StepKind
from dcctl.playbook.runner import RunPlan, plan_steps
from dcctl.results.provisioned import (
    RecordUnreadable,
    new_record,
    read_record,
    record_path,
    remove_record,
    with_recorded_python,
    write_record,
)

VENV_PYTHON = "/opt/dcctl/venv/bin/python"
WHEN = datetime(2026, 11, 28, 13, 35, 1, tzinfo=timezone.utc)


def gpu(name: str = "gpu1", **fields: Any) -> Host:
    return Host(name=name, address=fields.pop("address", f"10.0.0.{name[-1]}"), **fields)


def test_record_round_trip_private_files(tmp_path: Path) -> None:
    state = tmp_path / "state"
    host = gpu()
    path = write_record(state, host.name, new_record(host, VENV_PYTHON, WHEN))
    assert path == state / "provisioned" / "gpu1.json"
    assert json.loads(path.read_text()) == {
        "python": VENV_PYTHON,
        "venv": "/opt/dcctl/venv",
        "address": "10.0.0.1",
        "provisioned_at": "2026-11-28T13:35:01Z",
    }
    assert path.stat().st_mode & 0o777 == 0o600
    assert (state / "provisioned").stat().st_mode & 0o777 == 0o700
    assert state.stat().st_mode & 0o777 == 0o700
    record = read_record(state, host.name)
    assert record is not None and record.python == VENV_PYTHON and record.fits(host)
    assert remove_record(state, host.name) is True
    assert read_record(state, host.name) is None
    assert remove_record(state, host.name) is False


def test_a_host_name_that_is_no_file_name_gets_a_safe_one(tmp_path: Path) -> None:
    path = record_path(tmp_path, "../../etc/passwd")
    assert path.parent == tmp_path / "provisioned"
    assert "/" not in path.name and not path.name.startswith(".")


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[1, 2]",
        '{"python": "/v/bin/python"}',
        '{"python": "bin/python", "venv": "/v", "address": "a", "provisioned_at": "t"}',
        '{"python": 3, "venv": "/v", "address": "a", "provisioned_at": "t"}',
    ],
)
def test_a_damaged_record_is_an_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = record_path(tmp_path, "gpu1")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(RecordUnreadable, match=str(path)):
        read_record(tmp_path, "gpu1")


def test_recorded_python_replaces_only_an_unset_one(tmp_path: Path) -> None:
    unset, chosen = gpu("gpu1"), gpu("gpu2", python="/usr/bin/python3", python_set=True)
    for host in (unset, chosen):
        write_record(tmp_path, host.name, new_record(host, VENV_PYTHON))
    bare = gpu("gpu3")  # never provisioned
    warnings: list[str] = []
    hosts = with_recorded_python([unset, chosen, bare], tmp_path, warnings.append)
    assert [host.python for host in hosts] == [VENV_PYTHON, "/usr/bin/python3", DEFAULT_PYTHON]
    assert warnings == []


@pytest.mark.parametrize("changed", [{"address": "10.9.9.9"}, {"runtime_venv": "/srv/other-venv"}])
def test_a_record_for_another_address_or_venv_is_stale(
    tmp_path: Path, changed: dict[str, str]
) -> None:
    write_record(tmp_path, "gpu1", new_record(gpu(), VENV_PYTHON))
    [host] = with_recorded_python([gpu(**changed)], tmp_path, print)
    assert host.python == DEFAULT_PYTHON


def test_a_damaged_record_costs_only_itself_with_a_warning(tmp_path: Path) -> None:
    write_record(tmp_path, "gpu2", new_record(gpu("gpu2"), VENV_PYTHON))
    broken = record_path(tmp_path, "gpu1")
    broken.write_text("{")
    warnings: list[str] = []
    hosts = with_recorded_python([gpu("gpu1"), gpu("gpu2")], tmp_path, warnings.append)
    assert [host.python for host in hosts] == [DEFAULT_PYTHON, VENV_PYTHON]
    assert warnings == [
        f"{broken}: not a dcctl provision record; ignored (run `dcctl provision` again to "
        "rewrite it)"
    ]


def _plan(tmp_path: Path, hosts: list[Host], kinds: list[str]) -> RunPlan:
    from dcctl.fleet.outcome import FleetOptions

    steps = tuple(PlaybookStep(name=kind, kind=cast(StepKind, kind)) for kind in kinds)
    return RunPlan(
        playbook=Playbook(name="p", source="<p>", steps=steps),
        command="run",
        hosts=hosts,
        inventory_source="<test>",
        state_dir=tmp_path,
        fleet_options=FleetOptions(trusted_keys_file=tmp_path / "known_hosts"),
    )


def test_bench_and_certify_steps_run_the_recorded_python_and_check_does_not(
    tmp_path: Path,
) -> None:
    hosts = [gpu("gpu1"), gpu("gpu2", python="/usr/bin/python3", python_set=True)]
    for host in hosts:
        write_record(tmp_path, host.name, new_record(host, VENV_PYTHON))
    seen: dict[str, list[str]] = {}

    def build(step: PlaybookStep, step_hosts: Sequence[Host]) -> Any:
        seen[step.name] = [host.python for host in step_hosts]
        return None

    plan_steps(_plan(tmp_path, hosts, ["check", "bench", "certify"]), build)
    assert seen == {
        "check": [DEFAULT_PYTHON, "/usr/bin/python3"],
        "bench": [VENV_PYTHON, "/usr/bin/python3"],
        "certify": [VENV_PYTHON, "/usr/bin/python3"],
    }


def test_a_check_only_run_reads_no_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state dir whose records cannot be read does not bother a plain check."""
    (tmp_path / "provisioned").write_text("a file where the records' directory would be")
    plan_steps(_plan(tmp_path, [gpu()], ["check"]), _build_nothing)
    assert capsys.readouterr().err == ""
    plan_steps(_plan(tmp_path, [gpu()], ["bench"]), _build_nothing)
    assert "ignored (run `dcctl provision` again" in capsys.readouterr().err


def _build_nothing(step: PlaybookStep, hosts: Sequence[Host]) -> Any:
    return None
