"""Runs the real `dcctl` command line in a subprocess, isolated from the user's ~/.ssh and state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DcctlResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.stdout)
        return document


def dcctl_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DCCTL_INVENTORY", "SSH_AUTH_SOCK", "XDG_STATE_HOME")
    }
    env["HOME"] = str(home)
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


def run_dcctl(
    args: list[str], home: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> DcctlResult:
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "dcctl", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dcctl_env(home, env),
        stdin=subprocess.DEVNULL,
    )
    return DcctlResult(proc.returncode, proc.stdout, proc.stderr)


def start_dcctl(args: list[str], home: Path) -> subprocess.Popen[str]:
    """The command line started, not awaited: for tests that stop it halfway (Ctrl-C, kills)."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "dcctl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dcctl_env(home),
    )


def load_schema() -> dict[str, Any]:
    schema_path = Path(__file__).parents[1] / "dcctl" / "results" / "run.schema.json"
    schema: dict[str, Any] = json.loads(schema_path.read_text())
    return schema
