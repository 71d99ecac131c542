"""The bench task's own parts: the preflight's verdicts, the worker launcher (progress relay,
missing ranks, deadline, orphaned ranks), the soak sampler's summary, and the task's params."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from processes import process_alive, wait_for

from dcctl.node.bench import preflight
from dcctl.node.bench.launch import run_workers
from dcctl.node.bench.orphans import LAUNCHER_ENV
from dcctl.node.bench.soak import summarize_samples
from dcctl.node.bench.task import bench_task, with_defaults
from dcctl.node.facts import TaskParamsError

PY = "/opt/venv/bin/python"
H100 = {"name": "NVIDIA H100 80GB HBM3"}


# --- preflight verdicts, from answers torch gives -----------------------------------------


def judge(answer: dict[str, Any], gpus: int) -> str:
    return preflight._judge(answer, PY, [H100] * gpus, "550.54.15")


def test_torch_missing_names_the_interpreter_and_the_install() -> None:
    error = judge({"import_error": "ModuleNotFoundError: No module named 'torch'"}, 8)
    assert error.startswith(f"torch cannot be imported by {PY} (ModuleNotFoundError")
    assert f"{PY} -m pip install torch (a CUDA build matching the driver" in error


def test_cpu_build_on_a_gpu_node_is_refused() -> None:
    error = judge({"torch": "2.13.0+cpu", "cuda_build": None, "gloo": True}, 8)
    assert "a CPU-only build, on a node with 8 NVIDIA GPU(s)" in error
    assert "driver 550.54.15" in error


def test_cuda_build_the_driver_cannot_run_quotes_torch() -> None:
    # torch's own warning when the driver is older than the CUDA build needs.
    warning = (
        "CUDA initialization: The NVIDIA driver on your system is too old (found version 11040)."
    )
    answer = {"torch": "2.5.1+cu124", "cuda_build": "12.4", "cuda_available": False,
              "warnings": [warning]}  # fmt: skip
    error = judge(answer, 8)
    assert "torch 2.5.1+cu124 (CUDA 12.4)" in error
    assert "found version 11040" in error


def test_torch_seeing_fewer_gpus_than_nvml_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    answer = {"torch": "2.5.1+cu124", "cuda_build": "12.4", "cuda_available": True,
              "devices": [{"index": 0}, {"index": 1}]}  # fmt: skip
    assert judge(answer, 8) == "torch sees 2 of the 8 GPUs NVML sees (CUDA_VISIBLE_DEVICES=0,1)"
    answer["devices"] = [{"index": i} for i in range(8)]
    assert judge(answer, 8) == ""


def test_preflight_of_a_python_without_torch_is_one_clear_error(tmp_path: Path) -> None:
    """A real interpreter that cannot import torch (an empty site, -S style)."""
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -S -I "$@"\n')
    fake.chmod(0o755)
    result = preflight.run_preflight([], None, python=str(fake))
    assert result["error"].startswith(f"torch cannot be imported by {fake} (ModuleNotFoundError")
    assert result["device"] == "cpu"


def test_preflight_of_an_interpreter_that_is_not_there() -> None:
    result = preflight.run_preflight([], None, python="/nonexistent/python3")
    assert result["error"].startswith("cannot start /nonexistent/python3")


# --- the launcher, with small stand-in workers --------------------------------------------


def worker(tmp_path: Path, body: str) -> Any:
    """A command builder running `body` as a Python worker given the params JSON."""
    script = tmp_path / "worker.py"
    script.write_text("import json, os, sys, time\nparams = json.loads(sys.argv[1])\n"
                      + textwrap.dedent(body))  # fmt: skip

    def command(params: dict[str, Any]) -> list[str]:
        return [sys.executable, str(script), json.dumps(params)]

    return command


def test_rank_files_are_collected_and_progress_relayed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = worker(tmp_path, """
        print('<dcctl-progress>{"step": 1, "of": 2}</dcctl-progress>', flush=True)
        print("noise from a library", flush=True)
        for rank in (0, 1):
            with open(os.path.join(params["out_dir"], f"rank-{rank}.json"), "w") as f:
                json.dump({"rank": rank, "value": params["value"]}, f)
    """)  # fmt: skip
    run = run_workers(command, {"value": 7}, time.monotonic() + 60)
    assert run.rank_docs == [{"rank": 0, "value": 7}, {"rank": 1, "value": 7}]
    assert run.error(2, "the workers") is None
    assert capsys.readouterr().out == '<dcctl-progress>{"step": 1, "of": 2}</dcctl-progress>\n'


def test_a_rank_that_wrote_nothing_is_named_with_the_stderr_tail(tmp_path: Path) -> None:
    command = worker(tmp_path, """
        open(os.path.join(params["out_dir"], "rank-0.json"), "w").write('{"rank": 0}')
        sys.stderr.write("RuntimeError: CUDA error: out of memory\\n")
        sys.exit(1)
    """)  # fmt: skip
    run = run_workers(command, {}, time.monotonic() + 60)
    assert run.error(2, "the GEMM workers") == (
        "the GEMM workers exited 1 without a result from rank(s) [1]: "
        "RuntimeError: CUDA error: out of memory"
    )


def test_deadline_stops_the_workers_and_leaves_no_files(tmp_path: Path) -> None:
    command = worker(tmp_path, """
        open(os.path.join(params["out_dir"], "started"), "w").close()
        print(params["out_dir"], file=sys.stderr, flush=True)
        time.sleep(600)
    """)  # fmt: skip
    began = time.monotonic()
    run = run_workers(command, {}, time.monotonic() + 3)
    assert time.monotonic() - began < 30
    assert run.timed_out
    assert run.error(1, "the workers") == (
        "the workers did not finish before the deadline (ranks without a result: [0])"
    )
    out_dir = run.stderr_tail.strip().splitlines()[0]
    assert not os.path.exists(out_dir)


def test_ranks_die_when_their_launcher_is_killed(tmp_path: Path) -> None:
    """torchrun gives each rank its own session, so a SIGKILL to the task's group misses the
    ranks; die_with_parent makes the kernel end them with their parent."""
    pid_file = tmp_path / "rank.pid"
    rank_code = (
        "import os, time\n"
        "from dcctl.node.bench.orphans import die_with_parent\n"
        "die_with_parent()\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(600)\n"
    )
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {rank_code!r}], start_new_session=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    launcher = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "the rank never started"
            time.sleep(0.05)
        rank = int(pid_file.read_text())
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        while _alive(rank):
            assert time.monotonic() < deadline, "the rank outlived its launcher"
            time.sleep(0.05)
    finally:
        launcher.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# --- soak samples -------------------------------------------------------------------------


def test_soak_summary_names_throttling_per_gpu() -> None:
    # Bits as NVML defines them: 0x1 idle, 0x4 sw_power_cap, 0x40 hw_thermal.
    samples = [
        {"t_s": t, "index": 0, "sm_mhz": 1980, "temp_c": 60 + t, "power_w": 690.0, "reasons": 0}
        for t in range(4)
    ] + [
        {"t_s": t, "index": 1, "sm_mhz": 1980 - 100 * t, "temp_c": 85, "power_w": 700.0,
         "reasons": 0x40 | (0x4 if t > 1 else 0)}
        for t in range(4)
    ]  # fmt: skip
    summary = summarize_samples(samples)
    first, second = summary["gpus"]
    assert (first["index"], first["throttled"], first["temp_c_max"]) == (0, [], 63)
    assert second["sm_mhz_min"] == 1680 and second["sm_mhz_max"] == 1980
    assert second["reasons"] == {"hw_thermal": 1.0, "sw_power_cap": 0.5}
    assert summary["throttled"] == {"1": ["hw_thermal", "sw_power_cap"]}


def test_soak_summary_keeps_a_bounded_series() -> None:
    samples = [{"t_s": t, "index": 0, "sm_mhz": 1980, "reasons": 0} for t in range(3600)]
    (gpu,) = summarize_samples(samples)["gpus"]
    assert gpu["samples"] == 3600
    assert len(gpu["series"]) == 120


# --- the task's parameters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"benchmarks": ["gemm", "nccl"], "budgets_s": {"gemm": 1}}, "benchmarks must be"),
        ({"benchmarks": ["fio"], "budgets_s": {"fio": 0}}, "budgets_s must give"),
        ({"benchmarks": ["gemm"], "budgets_s": {"gemm": 9}, "gemm": {"dtypes": ["fp64"]}},
         "gemm: dtypes must be"),
        ({"benchmarks": ["allreduce"], "budgets_s": {"allreduce": 9},
          "allreduce": {"factor": 1}}, "allreduce: "),
        ({"benchmarks": ["fio"], "budgets_s": {"fio": 9}, "scratch_dir": "tmp"},
         "scratch_dir must be an absolute path"),
    ],
)  # fmt: skip
def test_bad_params_are_refused_before_anything_runs(params: dict[str, Any], says: str) -> None:
    with pytest.raises(TaskParamsError, match=says):
        bench_task(params)


def test_defaults_follow_the_device_and_quick() -> None:
    assert with_defaults("gemm", {}, "cuda", False)["m"] == 8192
    assert with_defaults("gemm", {}, "cpu", True)["dtypes"] == ["fp32"]
    assert with_defaults("gemm", {"m": 64}, "cpu", False)["m"] == 64
    assert with_defaults("fio", {}, "cuda", True)["runtime_s"] == 2


def test_rank_directories_a_killed_task_left_are_removed_a_day_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    stale, fresh = tmp_path / "dcctl-bench-old", tmp_path / "dcctl-bench-new"
    for directory in (stale, fresh):
        directory.mkdir()
        (directory / "rank-0.json").write_text("{}")
    day_ago = time.time() - 25 * 3600
    os.utime(stale, (day_ago, day_ago))
    command = worker(tmp_path, "pass\n")
    run_workers(command, {}, time.monotonic() + 60)
    assert not stale.exists()
    assert fresh.exists()


def test_soak_reader_on_values_recorded_from_a_live_h200() -> None:
    """NVML's own units (mW, the reasons bitmask) as an H200 reported them
    (tests/fixtures/nvml/h200-live.json); the recording has no SM clock, which the reader
    must take as a missing reading, not an error."""
    from dcctl.node.bench.soak import _read_once

    recorded = json.loads(
        (Path(__file__).parents[1] / "fixtures" / "nvml" / "h200-live.json").read_text()
    )["devices"][0]

    class RecordedNvml:
        NVML_CLOCK_SM = 1
        NVML_TEMPERATURE_GPU = 0

        def nvmlDeviceGetClockInfo(self, handle: object, kind: int) -> int:
            raise RuntimeError("not recorded")

        def nvmlDeviceGetTemperature(self, handle: object, kind: int) -> int:
            return int(recorded["temperature_c"])

        def nvmlDeviceGetPowerUsage(self, handle: object) -> int:
            return int(recorded["power_usage_mw"])

        def nvmlDeviceGetCurrentClocksEventReasons(self, handle: object) -> int:
            return int(recorded["clock_event_reasons"])

    samples = _read_once(RecordedNvml(), [object()], time.monotonic())
    (gpu,) = summarize_samples(samples)["gpus"]
    assert gpu["temp_c_max"] == 47
    assert gpu["power_w_max"] == pytest.approx(116.066)
    assert gpu["sm_mhz_min"] is None
    assert gpu["reasons"] == {"gpu_idle": 1.0}
    assert gpu["throttled"] == []


def test_a_rank_whose_parent_died_before_it_asked_to_die_with_it_leaves_at_once(
    tmp_path: Path,
) -> None:
    """The race a stop can hit while torchrun starts its ranks: torchrun killed between a
    rank's fork and its PR_SET_PDEATHSIG request. The rank then belongs to init, and must not
    train on for ever: it sees that its parent is no longer the launcher's child, and leaves."""
    survived, pid_file = tmp_path / "survived", tmp_path / "pid"
    rank = (
        "import os, sys\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while os.getppid() == int(sys.argv[1]):\n"  # until the would-be torchrun is gone
        "    os.sched_yield()\n"
        "from dcctl.node.bench.orphans import die_with_parent\n"
        "die_with_parent()\n"
        f"open({str(survived)!r}, 'w').close()\n"
    )
    torchrun = (
        "import subprocess, sys\n"
        "import os\n"
        f"subprocess.Popen([sys.executable, '-c', {rank!r}, str(os.getpid())],\n"
        "                 start_new_session=True)\n"
    )  # and exits at once, leaving the rank to init
    env = {**os.environ, LAUNCHER_ENV: str(os.getpid())}
    subprocess.run([sys.executable, "-c", torchrun], env=env, check=True, timeout=30)
    assert wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30)
    assert wait_for(lambda: not process_alive(int(pid_file.read_text())), 30)
    assert not survived.exists()
