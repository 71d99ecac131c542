"""Numeric options are checked while the command line is parsed: exit 2 and one clear
`Error:` line, before any inventory is read or host contacted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_dcctl
from typer.testing import CliRunner

from dcctl.cli.bounds import MAX_CONNECT_TIMEOUT_S, MAX_FORKS, MAX_TIMEOUT_S, MAX_WORKERS
from dcctl.cli.main import app

REFUSED = [
    # (arguments, option, what the error says)
    (["--connect-timeout", "inf", "inventory", "hosts"], "--connect-timeout", "got inf"),
    (["--connect-timeout", "nan", "inventory", "hosts"], "--connect-timeout", "got nan"),
    (["--connect-timeout", "-inf", "inventory", "hosts"], "--connect-timeout", "got -inf"),
    (["--connect-timeout", "1e400", "inventory", "hosts"], "--connect-timeout", "got inf"),
    (["--connect-timeout", "0", "inventory", "hosts"], "--connect-timeout", "got 0"),
    (["--connect-timeout", "86400", "inventory", "hosts"], "--connect-timeout", "to 3600"),
    (["check", "--timeout", "inf"], "--timeout", "expected seconds from 1 to 604800, got inf"),
    (["check", "--timeout", "NaN"], "--timeout", "got nan"),
    (["check", "--timeout", "-5"], "--timeout", "got -5"),
    (["check", "--timeout", "1e12"], "--timeout", "got 1e+12"),
    (["--forks", "0", "check"], "--forks", "greater than or equal to 1"),
    (["--forks", "1000000", "check"], "--forks", f"less than or equal to {MAX_FORKS}"),
    (["--forks", "9" * 40, "check"], "--forks", f"less than or equal to {MAX_FORKS}"),
    (["--workers", "100000", "check"], "--workers", f"less than or equal to {MAX_WORKERS}"),
    (["--workers", "-1", "check"], "--workers", "greater than or equal to 0"),
    (["check", "--dcgm", "0"], "--dcgm", "greater than or equal to 1"),
    (["check", "--dcgm", "4"], "--dcgm", "less than or equal to 3"),
    (["check", "--dcgm", "nan"], "--dcgm", "valid integer"),
]


@pytest.mark.parametrize(("args", "option", "says"), REFUSED)
def test_out_of_range_option_is_a_usage_error(
    tmp_path: Path, args: list[str], option: str, says: str
) -> None:
    state = tmp_path / "state"
    result = CliRunner().invoke(app, ["--state-dir", str(state), *args],
                                env={"DCCTL_INVENTORY": ""})  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"Error: Invalid value for '{option}': ")
    assert says in error
    assert not state.exists()  # refused before anything ran


def test_largest_time_limits_run_without_overflow(tmp_path: Path) -> None:
    # The bounds themselves reach the fleet's deadlines and waits: no OverflowError there.
    args = ["--state-dir", str(tmp_path / "state"), "--json",
            "--connect-timeout", f"{MAX_CONNECT_TIMEOUT_S:g}",
            "check", "--timeout", f"{MAX_TIMEOUT_S:g}"]  # fmt: skip
    result = run_dcctl(args, home=tmp_path)
    assert result.code in (0, 1, 3), result.stderr
    assert "Overflow" not in result.stderr
    [host] = json.loads(result.stdout)["hosts"]
    assert "Overflow" not in json.dumps(host)
