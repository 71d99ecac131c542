"""The `persistence` step: persistence mode on for every NVIDIA GPU.

Read and set with nvidia-smi, the tool an operator would use: persistence mode keeps the
driver loaded between benchmarks, so the first CUDA call does not pay seconds of driver start.
"""

from __future__ import annotations

import shutil
from typing import Any

from dcctl.node.provision.commands import run_command
from dcctl.node.provision.privilege import Privilege
from dcctl.node.provision.result import step

QUERY_TIMEOUT_S = 60.0
SET_TIMEOUT_S = 120.0
QUERY_ARGV = ["nvidia-smi", "--query-gpu=persistence_mode", "--format=csv,noheader"]
SET_ARGV = ["nvidia-smi", "-pm", "1"]


def persistence_step(privilege: Privilege, check: bool) -> dict[str, Any]:
    if not shutil.which("nvidia-smi"):
        return step("persistence", "skipped", "no nvidia-smi: no NVIDIA GPU to set up")
    query = run_command(QUERY_ARGV, QUERY_TIMEOUT_S)
    modes = [line.strip() for line in query.stdout.splitlines() if line.strip()]
    if not query.ok:
        if "no devices were found" in (query.stdout + query.stderr).lower():
            return step("persistence", "skipped", "nvidia-smi finds no GPU", [QUERY_ARGV])
        return step(
            "persistence",
            "failed",
            f"nvidia-smi cannot read persistence mode: {query.why()}",
            [QUERY_ARGV],
        )
    if not modes:
        return step("persistence", "skipped", "nvidia-smi finds no GPU", [QUERY_ARGV])
    off = sum(1 for mode in modes if mode.lower() != "enabled")
    if not off:
        return step(
            "persistence", "ok", f"persistence mode on for all {len(modes)} GPU(s)", [QUERY_ARGV]
        )
    argv = privilege.argv(SET_ARGV)
    if not privilege.usable:
        return privilege.refused("persistence", "nvidia-smi -pm 1", [QUERY_ARGV, argv])
    if check:
        return step(
            "persistence",
            "changed",
            f"would turn persistence mode on ({off} of {len(modes)} GPU(s) off)",
            [QUERY_ARGV, argv],
        )
    outcome = run_command(argv, SET_TIMEOUT_S)
    if not outcome.ok:
        return step(
            "persistence", "failed", f"nvidia-smi -pm 1 failed: {outcome.why()}", [QUERY_ARGV, argv]
        )
    return step(
        "persistence",
        "changed",
        f"turned persistence mode on ({off} of {len(modes)} GPU(s) were off)",
        [QUERY_ARGV, argv],
    )
