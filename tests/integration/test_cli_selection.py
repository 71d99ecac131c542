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


def run_limit(tmp_path: Path, text: str, limit: str) -> tuple[int, str]:
    inventory = write_inventory(tmp_path, text)
    state = tmp_path / "state"
    args = ["-i", str(inventory), "-l", limit, "--state-dir", str(state), "inventory", "hosts"]
    result = run_dcctl(args, home=tmp_path)
    return result.code, one_error_line(result.stderr) if result.code else result.stdout


def test_range_bound_padded_past_what_python_reads_is_exit_2(tmp_path: Path) -> None:
    # 5,000 leading zeros passed the digit count and reached int(): a traceback, exit 1.
    code, line = run_limit(tmp_path, GPU_RACK, "gpu[" + "0" * 5000 + "1:2]")
    assert code == 2
    assert line.endswith(": bad host range: '00000000000000000000...' has more than 18 digits")
    assert len(line) < 300


def test_globs_one_per_term_are_counted_together(tmp_path: Path) -> None:
    # 501 terms of one glob each over 10,001 names: each passed alone, together 5 million
    # tries (minutes at 100,000 hosts).
    limit = ",".join(f"n{n}*" for n in range(1, 502))
    code, line = run_limit(tmp_path, "all:\n  hosts:\n    n[1:10000]:\n", limit)
    assert code == 2
    assert line.startswith(f"dcctl: error: --limit '{limit[:60]}... ({len(limit):,} characters)'")
    assert line.endswith(": 501 globs in all over 10,001 host and group names is too many to try")


def test_globs_that_reach_large_groups_again_and_again_are_refused(tmp_path: Path) -> None:
    # 200 intersections, each a glob over every group: 200 x 61,000 hosts gathered.
    groups = "".join(f"    g{n}:\n      hosts:\n        h[1:1000]:\n" for n in range(60))
    limit = ",".join("&" + "*" * stars for stars in range(1, 201))
    code, line = run_limit(tmp_path, f"all:\n  children:\n{groups}", limit)
    assert code == 2
    assert line.endswith(
        ": its terms reach groups of more than 10,000,000 hosts in all (dcctl's limit)"
    )


def test_a_long_limit_that_selects_nothing_is_shown_cut(tmp_path: Path) -> None:
    limit = "gpu01,!gpu01," + ",".join(["!gpu0*"] * 15_000)
    code, line = run_limit(tmp_path, GPU_RACK, limit)
    assert code == 2
    assert line.startswith(f"dcctl: error: --limit '{limit[:60]}... ({len(limit):,} characters)'")
    assert line.endswith(" selects no host of " + str(tmp_path / "inventories" / "x.yaml"))
