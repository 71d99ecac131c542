"""The ranges numeric options accept, checked while the command line is parsed (exit 2).

A time limit of `inf` or `nan` parses as a float and would pass a plain `min=`, then make
every host fail deep inside the fleet (OverflowError); an absurd one is a typo that would
hold a hung host for years. Counts past these bounds cost threads, file descriptors and
processes without making a run faster.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

DAY_S = 24 * 3600

# Per-host time limits (`--timeout`): a week covers any soak or certification run.
MAX_TIMEOUT_S = 7 * DAY_S
# TCP connect, SSH banner and authentication (`--connect-timeout`).
MAX_CONNECT_TIMEOUT_S = 3600.0
# Hosts running at once (`--forks`): each holds a thread and an SSH connection, and as many
# again may be connecting; past a few thousand the controller runs out of file descriptors
# before it runs any faster.
MAX_FORKS = 4096
# Worker processes (`--workers`): each is a Python interpreter of ~50 MB.
MAX_WORKERS = 256
# Ranks per node of a job spanning nodes (`--nproc-per-node`): GPUs per node, or gloo ranks.
MAX_RANKS_PER_NODE = 64
# Seconds every node's ranks may take to join a job spanning nodes (`--join-timeout`):
# torch's import and CUDA/NCCL initialisation on every rank, tens of seconds on a busy node.
DEFAULT_JOIN_TIMEOUT_S = 180.0


def seconds_between(low: float, high: float) -> Callable[[float], float]:
    """A typer callback refusing a number of seconds outside [low, high], `nan` and `inf`."""

    def check(value: float) -> float:
        if not low <= value <= high:  # also false for nan
            raise typer.BadParameter(f"expected seconds from {low:g} to {high:g}, got {value:g}")
        return value

    return check
