"""Running one command on the node: argv only (never a shell), a timeout, short output.

Children stay in the task's process group, on purpose: the stdin watchdog kills that group
when the controller goes away, and a pip or apt-get in a session of its own would outlive it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import NamedTuple

# What a step keeps of a command's output: enough to show why it failed, not a pip log.
KEPT_LINES = 5
KEPT_CHARS = 1000


class Outcome(NamedTuple):
    """How a command ended; `returncode` is None when it did not start or was killed."""

    argv: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """One line saying why the command failed, its own words first."""
        if self.error is not None:
            return self.error
        line = last_line(self.stderr) or last_line(self.stdout)
        return line or f"{self.argv[0]} exited with status {self.returncode}"


def last_line(text: str) -> str:
    """The last non-blank line, stripped; '' when there is none."""
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:KEPT_CHARS]
    return ""


def tail(text: str) -> str:
    """The last few lines: kept in the outcome so a payload never carries a whole build log."""
    lines = text.splitlines()[-KEPT_LINES:]
    return "\n".join(lines)[-KEPT_CHARS:]


def run_command(
    argv: Sequence[str],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    keep_stdout: bool = False,
) -> Outcome:
    """Run argv to its end or its timeout; `env` is added to this process's environment.

    Output is cut to its last lines, stdout too unless `keep_stdout` (a JSON report)."""
    full_env = None if env is None else {**os.environ, **env}
    try:
        # stdin is /dev/null: the task's own stdin is the watchdog's pipe, and apt or pip must
        # never wait on a question nobody can answer.
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=full_env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        killed = f"{argv[0]} did not finish within {timeout_s:g} s: killed"
        out, err = tail(_text(exc.stdout)), tail(_text(exc.stderr))
        return Outcome(list(argv), None, out, err, timed_out=True, error=killed)
    except OSError as exc:  # not found, not executable
        return Outcome(list(argv), None, "", "", error=f"cannot run {argv[0]}: {exc.strerror}")
    stdout = done.stdout if keep_stdout else tail(done.stdout)
    return Outcome(list(argv), done.returncode, stdout, tail(done.stderr))


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
