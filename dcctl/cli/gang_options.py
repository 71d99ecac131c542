"""The options of every command that starts a job across nodes (certify, allreduce --scope
cluster|pairs): ranks per node, rendezvous port, join timeout."""

from __future__ import annotations

from typing import Any

import typer

from dcctl.cli.bounds import (
    DEFAULT_JOIN_TIMEOUT_S,
    MAX_RANKS_PER_NODE,
    MAX_TIMEOUT_S,
    seconds_between,
)


def _help(scope: str, text: str) -> str:
    """`text` after the scope it applies to ("cluster/pairs: "), or alone as a sentence."""
    return f"{scope}{text}" if scope else text[0].upper() + text[1:]


def nproc_per_node_option(scope: str = "") -> Any:
    return typer.Option(
        None,
        "--nproc-per-node",
        min=1,
        max=MAX_RANKS_PER_NODE,
        help=_help(scope, "ranks per node (default: one per GPU; 2 on a node without GPUs)."),
        show_default=False,
    )


def port_option(scope: str = "") -> Any:
    return typer.Option(
        None,
        "--port",
        min=1,
        max=65535,
        help=_help(scope, "rendezvous port on each job's first node (default: a free one)."),
        show_default=False,
    )


def join_timeout_option(scope: str = "") -> Any:
    return typer.Option(
        DEFAULT_JOIN_TIMEOUT_S,
        "--join-timeout",
        callback=seconds_between(1.0, MAX_TIMEOUT_S),
        help=_help(scope, "seconds every node's ranks may take to join the job."),
    )
