"""Runs the real `dcctl` command line in a subprocess, isolated from the user's ~/.ssh and state."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema


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


@functools.lru_cache(maxsize=1)
def _schema_validator() -> Any:
    schema = load_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate_document(document: Any) -> None:
    """What `jsonschema.validate(document, load_schema())` does, with the schema itself checked
    and the validator built once per session instead of on every call (checking the schema
    against its meta-schema costs more than validating a document)."""
    error = jsonschema.exceptions.best_match(_schema_validator().iter_errors(document))
    if error is not None:
        raise error
