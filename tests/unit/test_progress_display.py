"""How node progress is shown: its text, the host lines under the bar at a terminal, and the
plain lines a log gets with -v."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from dcctl.cli.options import GlobalOptions
from dcctl.cli.step import progress_for
from dcctl.fleet.outcome import FleetRun, HostOutcome
from dcctl.inventory.model import Host
from dcctl.playbook.model import PlaybookStep
from dcctl.playbook.recorder import RunRecorder
from dcctl.playbook.session import StepSpec, new_run_meta, run_host_step
from dcctl.report.progress import (
    LOG_INTERVAL_S,
    SHOWN_HOSTS,
    TEXT_MAX_CHARS,
    HostLines,
    HostProgress,
    progress_text,
)


@pytest.mark.parametrize(
    ("progress", "text"),
    [
        ({"bench": "gemm", "dtype": "bf16", "step": 3, "of": 5}, "gemm bf16 3/5"),
        (
            {"bench": "fio", "job": "seqread", "step": 2, "of": 4, "elapsed_s": 12.3,
             "runtime_s": 30},
            "fio seqread 2/4 12/30 s",
        ),
        ({"bench": "allreduce", "bytes": 64 * 2**20, "step": 7, "of": 20}, "allreduce 7/20 64 MiB"),
        ({"of": 5, "dtype": "fp8", "bench": "gemm", "rank": 3}, "gemm fp8 rank 3"),
        ({"step": 4}, "step 4"),
        ({"rank": "2", "phase": "warmup"}, "2 warmup"),  # other short strings follow, by key
        ({"elapsed_s": 61.6}, "62 s"),
        ({}, "running"),
        # Not labels: long strings, numbers other than the counts, bools, nested values.
        ({"bench": "soak", "message": "x" * 200, "temp_c": 71, "ok": True, "gpus": [1]}, "soak"),
        ({"step": True, "of": 5}, "running"),
        ({"step": float("nan")}, "running"),
        # Node output reaches a terminal: no escape sequences or line breaks get through.
        ({"bench": "fio\x1b[2J\nx"}, "fio[2Jx"),
    ],
)  # fmt: skip
def test_progress_text(progress: dict[str, Any], text: str) -> None:
    assert progress_text(progress) == text


def test_progress_text_is_bounded() -> None:
    progress = {f"k{i:02}": "abcdefghij" for i in range(40)}
    text = progress_text(progress)
    assert len(text) == TEXT_MAX_CHARS and text.endswith("…")


def test_host_lines_keep_the_hosts_that_reported_last() -> None:
    lines = HostLines()
    for index in range(SHOWN_HOSTS + 3):
        lines.update(f"gpu{index:03}", f"step {index}")
    lines.update("gpu005", "again")  # reported again: now the most recent
    lines.remove("gpu010")  # landed
    shown = lines.lines()
    assert len(shown) == SHOWN_HOSTS - 1
    assert shown[0] == "gpu003  step 3"
    assert shown[-1] == "gpu005  again"


def test_host_lines_line_up_the_names() -> None:
    lines = HostLines()
    lines.update("a", "fio seqread 1/4")
    lines.update("gpu001", "gemm bf16 3/5")
    assert lines.lines() == ["a       fio seqread 1/4", "gpu001  gemm bf16 3/5"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_at_a_terminal_the_host_lines_are_drawn_under_the_bar() -> None:
    terminal = Terminal()
    with HostProgress("bench", 2, enabled=True, stream=terminal) as progress:
        assert progress.wants_node_progress
        progress.node_progress("gpu001", {"bench": "gemm", "dtype": "bf16", "step": 3, "of": 5})
        progress.node_progress("gpu002", {"bench": "fio", "job": "seqread", "step": 1, "of": 4})
        progress.host_done("gpu002", "passed")
        progress._progress.refresh()
        drawn = terminal.getvalue()
    assert "gpu001  gemm bf16 3/5" in drawn
    assert "1/2" in drawn  # the bar: hosts done of all
    last_frame = drawn[drawn.rfind("1/2") :]
    assert "seqread" not in last_frame  # a host that landed has no line


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_with_verbose_a_log_gets_a_line_per_host_now_and_then() -> None:
    log = io.StringIO()
    clock = Clock()
    progress = HostProgress("bench", 2, enabled=True, verbose=True, stream=log, clock=clock)
    with progress:
        assert progress.wants_node_progress
        for step in range(1, 4):
            progress.node_progress("gpu001", {"bench": "gemm", "step": step, "of": 9})
        progress.node_progress("gpu002", {"bench": "fio", "step": 1, "of": 4})
        clock.now += LOG_INTERVAL_S
        progress.node_progress("gpu001", {"bench": "gemm", "step": 4, "of": 9})
    assert log.getvalue().splitlines() == [
        "dcctl: gpu001: gemm 1/9",
        "dcctl: gpu002: fio 1/4",
        "dcctl: gpu001: gemm 4/9",
    ]


@pytest.mark.parametrize(("enabled", "verbose"), [(True, False), (False, True)])
def test_a_log_gets_no_progress_unless_asked_for(enabled: bool, verbose: bool) -> None:
    log = io.StringIO()
    with HostProgress("bench", 1, enabled=enabled, verbose=verbose, stream=log) as progress:
        assert not progress.wants_node_progress
        progress.node_progress("gpu001", {"step": 1})
        progress.host_done("gpu001", "passed")
    assert log.getvalue() == ""


# --- the command line's step, with a fleet that reports progress ------------------------------


class ReportingFleet:
    """Each host reports two progress lines, then lands."""

    def run(
        self,
        hosts: list[Host],
        task: str,
        params_for: Any,
        timeout_s: float,
        on_outcome: Any,
        on_progress: Any = None,
    ) -> FleetRun:
        for host in hosts:
            if on_progress is not None:
                on_progress(host.name, {"bench": "soak", "step": 1, "of": 600})
                on_progress(host.name, {"bench": "soak", "step": 2, "of": 600})
            on_outcome(HostOutcome(host, {}, None, 1.0))
        return FleetRun()


def options(tmp_path: Path, **changes: Any) -> GlobalOptions:
    defaults: dict[str, Any] = {
        "inventory": None, "limit": None, "forks": 4, "workers": 1, "json": False,
        "state_dir": tmp_path / "state", "verbose": False, "quiet": False, "strict": False,
        "accept_new_host_keys": False, "connect_timeout_s": 5.0,
    }  # fmt: skip
    return GlobalOptions(**{**defaults, **changes})


def run_step_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], **changes: Any
) -> list[str]:
    hosts = [Host(name=f"gpu{i:03}", address="10.0.0.1") for i in (1, 2)]
    spec = StepSpec("bench", "soak", lambda _h: {}, lambda _h, _f: [], 60.0)
    step = PlaybookStep(name="bench", kind="bench")
    recorder = RunRecorder(new_run_meta("bench", "inv.yaml"), tmp_path / "state", None)
    index = recorder.begin_step(step)
    with progress_for(options(tmp_path, **changes))(step, len(hosts)) as progress:
        node_progress = progress.node_progress if progress.wants_node_progress else None
        run_host_step(
            spec, hosts, ReportingFleet(), recorder, index,  # type: ignore[arg-type]
            progress.host_done, node_progress,
        )  # fmt: skip
    recorder.finish_step(index, interrupted=False)
    saved = recorder.finish(interrupted=False)
    assert [h["status"] for h in saved.document["hosts"]] == ["passed", "passed"]
    return capsys.readouterr().err.splitlines()


def test_verbose_step_off_a_terminal_logs_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_step_logged(tmp_path, capsys, verbose=True) == [
        "dcctl: gpu001: soak 1/600", "dcctl: gpu002: soak 1/600"
    ]  # fmt: skip


@pytest.mark.parametrize("changes", [{}, {"verbose": True, "quiet": True}])
def test_quiet_or_plain_step_off_a_terminal_logs_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any]
) -> None:
    assert run_step_logged(tmp_path, capsys, **changes) == []
