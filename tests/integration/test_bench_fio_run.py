"""run_fio against the real fio: files only in scratch_dir, removed on every ending, refusals
before anything is written, buffered fallback where O_DIRECT is refused."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mounts import tmpfs
from processes import children_running, process_alive, wait_for
from refusing_fuse import mounted

from dcctl.fleet.runtime import build_runtime
from dcctl.node.bench.fio import run_fio
from dcctl.node.bench.fio_request import JOB_ORDER
from dcctl.node.bench.fio_scratch import JOB_DIR_PREFIX
from dcctl.node.payload import parse_progress_line

ROOT = Path(__file__).resolve().parents[2]
# Small and short: every test here stays well under 15 s on two cores.
QUICK: dict[str, Any] = {"runtime_s": 0.5, "ramp_s": 0.2, "size_mb": 4}
FIO_MARK = "--output-format=json"  # on fio's command line, on no other process's
# The oldest Python the node runtime supports (dcctl.node.payload.MIN_PYTHON), where installed.
PYTHON_38 = Path("/root/.pyenv/versions/3.8.18/bin/python3.8")
needs_python_38 = pytest.mark.skipif(
    not PYTHON_38.is_file(), reason=f"{PYTHON_38} not installed (pyenv install 3.8.18)"
)

pytestmark = pytest.mark.skipif(
    shutil.which("fio") is None, reason="fio is not installed (apt-get install fio)"
)


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def fio_left(scratch: Path) -> list[int]:
    """Live fio processes working under `scratch`, whoever their parent now is (fio names its
    directory on its command line; a forked fio job would be in a session of its own)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(cmdline.parent.name)
        if FIO_MARK in text and str(scratch) in text and process_alive(pid):
            found.append(pid)
    return found


def soon(seconds: float = 120.0) -> float:
    return time.monotonic() + seconds


def test_four_jobs_figures_and_nothing_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "keep.txt").write_text("someone else's file\n")
    before = listing(scratch)

    section = run_fio({"scratch_dir": str(scratch), **QUICK}, soon())

    assert section["error"] is None, section
    assert listing(scratch) == before
    assert fio_left(scratch) == []
    assert section["fio_version"] and section["fio_version"].startswith("fio-")
    assert section["ioengine"] in ("libaio", "psync")
    assert section["direct"] is True and section["note"] is None  # ext4 takes O_DIRECT
    assert [job["name"] for job in section["jobs"]] == [
        "seqread", "seqwrite", "randread", "randwrite",
    ]  # fmt: skip
    for job in section["jobs"]:
        assert job["mb_s"] > 0 and job["iops"] > 0
        # MB/s and IOPS describe the same transfers, MB/s = IOPS * bs, except that fio counts
        # the bytes of the I/Os in flight when the ramp ends but not those I/Os: at most one
        # queue's worth per job, which is a lot in a 0.5 s run and nothing in a 30 s one.
        in_flight = job["iodepth"] * job["numjobs"] * job["bs"]
        gap = abs(job["mb_s"] * 1e6 - job["iops"] * job["bs"]) * job["runtime_s"]
        assert gap <= 2 * in_flight + 0.01 * job["mb_s"] * 1e6 * job["runtime_s"]
        p50, p99, p999 = (job["clat_us"][point] for point in ("p50", "p99", "p99.9"))
        assert p50 is not None and p99 is not None and p999 is not None
        assert 0 < p50 <= p99 <= p999
        assert job["runtime_s"] == pytest.approx(0.5, abs=0.3)
    progress = [parse_progress_line(line) for line in capsys.readouterr().out.splitlines()]
    starts = [p for p in progress if p is not None and "elapsed_s" not in p]
    assert starts == [
        {"bench": "fio", "job": name, "step": step, "of": 4}
        for step, name in enumerate(["seqread", "seqwrite", "randread", "randwrite"], 1)
    ]


def test_missing_scratch_dir_is_made_and_removed(tmp_path: Path) -> None:
    scratch = tmp_path / "var" / "tmp" / "dcctl"

    section = run_fio({"scratch_dir": str(scratch), **QUICK, "jobs": ["seqread"]}, soon())

    assert section["error"] is None, section
    assert [job["name"] for job in section["jobs"]] == ["seqread"]
    assert listing(tmp_path) == []


def test_full_filesystem_refused_before_anything_is_written(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "size=8m") as small:
        section = run_fio({"scratch_dir": str(small), **QUICK, "size_mb": 16}, soon())

        assert listing(small) == []
    assert section["jobs"] == []
    error = section["error"]
    assert error is not None
    assert f"not enough free space in {small}" in error
    assert "need" in error and "free" in error and "MiB" in error


def test_tmpfs_runs_direct_where_the_kernel_allows_it(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ram", "size=64m") as ram:
        probe = ram / "probe"
        try:
            os.close(os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT))
            kernel_allows = True  # tmpfs has O_DIRECT since Linux 6.6
        except OSError:
            kernel_allows = False
        probe.unlink(missing_ok=True)

        section = run_fio({"scratch_dir": str(ram), **QUICK, "jobs": ["seqread"]}, soon())

        assert listing(ram) == []
    assert section["error"] is None, section
    assert section["direct"] is kernel_allows
    assert (section["note"] is None) is kernel_allows


def test_o_direct_refused_runs_buffered_with_a_note(tmp_path: Path) -> None:
    with mounted(tmp_path / "fuse", capacity_mib=64) as fuse:
        section = run_fio(
            {"scratch_dir": str(fuse), **QUICK, "jobs": ["seqread", "randwrite"]}, soon()
        )

        assert listing(fuse) == []
    assert section["error"] is None, section
    assert section["direct"] is False
    assert section["note"] is not None
    assert "O_DIRECT refused" in section["note"] and "ran buffered" in section["note"]
    assert [(job["name"], job["direct"]) for job in section["jobs"]] == [
        ("seqread", False), ("randwrite", False),
    ]  # fmt: skip


def test_deadline_cuts_the_running_job(tmp_path: Path) -> None:
    started = time.monotonic()

    section = run_fio({"scratch_dir": str(tmp_path), **QUICK, "runtime_s": 30}, started + 3)

    assert time.monotonic() < started + 3
    assert listing(tmp_path) == []
    assert fio_left(tmp_path) == []
    assert section["jobs"] == []
    error = section["error"]
    assert error is not None
    assert error.startswith("deadline reached during seqread")
    assert "not run: seqwrite, randread, randwrite" in error


_TASK = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from dcctl.node.bench.fio import run_fio
section = run_fio(json.loads(sys.argv[2]), time.monotonic() + 120)
print(json.dumps(section), flush=True)
"""


def _start_task(
    scratch: Path,
    runtime_s: float = 60,
    python: str = sys.executable,
    root: Path = ROOT,
    jobs: tuple[str, ...] = JOB_ORDER,
) -> subprocess.Popen[str]:
    """run_fio in a process of its own, as the node runtime runs it (`-S`, the code under
    `root`): its own process group, so killing the group (as the stdin watchdog does) spares
    the test."""
    params = json.dumps(
        {"scratch_dir": str(scratch), **QUICK, "runtime_s": runtime_s, "jobs": list(jobs)}
    )
    return subprocess.Popen(
        [python, "-S", "-c", _TASK, str(root), params],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _wait_for_fio_files(task: subprocess.Popen[str], scratch: Path) -> None:
    """Until fio runs and has laid out its first file (so there is something to remove)."""

    def laid_out() -> bool:
        return any(scratch.glob(f"{JOB_DIR_PREFIX}*/dcctl-fio.0.0"))

    assert wait_for(lambda: laid_out() and children_running(task.pid, FIO_MARK), 10)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_stops_fio_and_removes_its_files(tmp_path: Path, stop: int) -> None:
    task = _start_task(tmp_path)
    _wait_for_fio_files(task, tmp_path)

    task.send_signal(stop)
    out, _ = task.communicate(timeout=10)

    assert task.returncode == 0
    section = json.loads(out.strip().splitlines()[-1])
    name = signal.Signals(stop).name
    assert section["error"] == (
        f"stopped by {name} during seqread; not run: seqwrite, randread, randwrite"
    )
    assert listing(tmp_path) == []
    assert fio_left(tmp_path) == []


# randread: fio forks four job processes, each in a session of its own.
@pytest.mark.parametrize("job", ["seqread", "randread"])
def test_sigkill_of_the_task_group_still_removes_the_files(tmp_path: Path, job: str) -> None:
    task = _start_task(tmp_path, jobs=(job,))
    _wait_for_fio_files(task, tmp_path)

    os.killpg(task.pid, signal.SIGKILL)  # no handler runs: the cleanup guard must act
    task.communicate(timeout=10)

    assert wait_for(lambda: listing(tmp_path) == [], 10), listing(tmp_path)
    assert wait_for(lambda: fio_left(tmp_path) == [], 10), fio_left(tmp_path)


def test_fio_missing_names_the_install_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    sysroot = tmp_path / "sysroot"
    (sysroot / "etc").mkdir(parents=True)
    (sysroot / "etc" / "os-release").write_text('ID="rocky"\nID_LIKE="rhel centos fedora"\n')
    scratch = tmp_path / "scratch"
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv("DCCTL_SYSROOT", str(sysroot))

    section = run_fio({"scratch_dir": str(scratch), **QUICK}, soon())

    assert section["error"] == (
        "fio is not installed (not on PATH): install it with `dnf install fio`"
    )
    assert not scratch.exists()


def _a_block_device() -> str | None:
    for name in sorted(os.listdir("/dev")):
        path = os.path.join("/dev", name)
        if stat.S_ISBLK(os.lstat(path).st_mode):
            return path
    return None


@pytest.mark.parametrize("kind", ["block device", "under /dev", "symlink into /dev"])
def test_paths_into_dev_are_refused(tmp_path: Path, kind: str) -> None:
    if kind == "block device":
        target = _a_block_device()
        if target is None:
            pytest.skip("no block device in /dev")
    elif kind == "under /dev":
        target = "/dev/shm"
    else:
        (tmp_path / "scratch").symlink_to("/dev/shm")
        target = str(tmp_path / "scratch")

    section = run_fio({"scratch_dir": target, **QUICK}, soon())

    error = section["error"]
    assert error is not None
    assert "under /dev: fio writes only files inside a directory, never to a device" in error
    assert section["jobs"] == []


def test_a_block_device_node_elsewhere_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "disk"
    try:
        os.mknod(node, stat.S_IFBLK | 0o600, os.makedev(7, 0))  # loop0's numbers
    except PermissionError:
        pytest.skip("making a device node needs root")

    section = run_fio({"scratch_dir": str(node), **QUICK}, soon())

    assert section["error"] == (
        f"scratch_dir {node} is a block device, not a directory: fio writes only files "
        "inside a directory"
    )


def test_a_file_as_scratch_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "data.img"
    target.write_bytes(b"\0" * 4096)

    section = run_fio({"scratch_dir": str(target), **QUICK}, soon())

    assert section["error"] == (
        f"scratch_dir {target} is a file, not a directory: fio writes only files inside a directory"
    )
    assert target.read_bytes() == b"\0" * 4096


def test_a_filename_param_is_refused(tmp_path: Path) -> None:
    section = run_fio({"scratch_dir": str(tmp_path), "filename": "/dev/sda"}, soon())

    assert section["error"] is not None
    assert section["error"].startswith("fio parameter 'filename' is not accepted")
    assert listing(tmp_path) == []


def _shipped_runtime(into: Path) -> Path:
    """The node runtime exactly as the controller ships it, unpacked."""
    with zipfile.ZipFile(io.BytesIO(build_runtime().archive)) as archive:
        archive.extractall(into)
    return into


@needs_python_38
def test_python_38_runs_the_shipped_runtime_to_the_end(tmp_path: Path) -> None:
    runtime = _shipped_runtime(tmp_path / "runtime")
    scratch = tmp_path / "scratch"

    task = _start_task(scratch, runtime_s=0.5, python=str(PYTHON_38), root=runtime)
    out, _ = task.communicate(timeout=30)

    section = json.loads(out.strip().splitlines()[-1])
    assert section["error"] is None, section
    assert [job["name"] for job in section["jobs"]] == list(JOB_ORDER)
    assert not scratch.exists()


@needs_python_38
def test_python_38_guard_cleans_up_after_sigkill(tmp_path: Path) -> None:
    runtime = _shipped_runtime(tmp_path / "runtime")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    task = _start_task(scratch, python=str(PYTHON_38), root=runtime)
    _wait_for_fio_files(task, scratch)

    os.killpg(task.pid, signal.SIGKILL)
    task.communicate(timeout=10)

    assert wait_for(lambda: listing(scratch) == [], 10), listing(scratch)
    assert wait_for(lambda: fio_left(scratch) == [], 10), fio_left(scratch)
