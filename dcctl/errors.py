"""Errors a user can cause. Each carries the one line the CLI prints and its exit code."""

from __future__ import annotations


class DcctlError(Exception):
    """An error that is reported as one line, without a traceback."""

    exit_code = 2


class InputError(DcctlError):
    """Invalid inventory, playbook, option or pattern: nothing was run (exit 2)."""

    exit_code = 2
