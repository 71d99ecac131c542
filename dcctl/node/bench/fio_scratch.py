"""Where fio may write: files inside the host's scratch_dir, in a fresh directory dcctl names.

Never a device: a scratch_dir that resolves under /dev, or that is anything but a directory, is
refused before anything is written, and so is one without room for the job files plus a margin.
Standard library only, Python 3.8 syntax: it runs on the node.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile

JOB_DIR_PREFIX = "dcctl-fio-"
MIB = 1024**2
# Room kept free beyond the job files. fio's own JSON and log files are KiB; the margin keeps a
# benchmark from filling a filesystem that other users of the node share.
MARGIN_FRACTION = 0.10
MARGIN_MIN_BYTES = 16 * MIB


class ScratchRefused(Exception):
    """fio must not run here; the message says why, in one line."""


def _kind(path: str) -> str:
    mode = os.stat(path).st_mode
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    return "a file" if stat.S_ISREG(mode) else "not a directory"


def refuse_unsafe(scratch_dir: str) -> None:
    """Raise ScratchRefused unless scratch_dir is a directory (or not there yet) off /dev."""
    real = os.path.realpath(scratch_dir)
    if real == "/dev" or real.startswith("/dev/"):
        raise ScratchRefused(
            f"scratch_dir {scratch_dir} resolves to {real}, under /dev: "
            "fio writes only files inside a directory, never to a device"
        )
    if os.path.exists(real) and not os.path.isdir(real):
        raise ScratchRefused(
            f"scratch_dir {scratch_dir} is {_kind(real)}, not a directory: "
            "fio writes only files inside a directory"
        )


def nearest_existing(path: str) -> str:
    """`path` or its closest existing ancestor: the filesystem the files would live on."""
    current = os.path.abspath(path)
    while not os.path.exists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


def space_needed(size_mib: float, files: int) -> int:
    """Bytes the job files take (`files` files of `size_mib` MiB) plus the margin."""
    job = int(size_mib * MIB) * files
    return job + max(MARGIN_MIN_BYTES, int(job * MARGIN_FRACTION))


def _mib(count: float) -> str:
    return f"{count / MIB:.0f} MiB"


def refuse_short_space(scratch_dir: str, size_mib: float, files: int) -> None:
    """Raise ScratchRefused when the filesystem of scratch_dir cannot hold the job files."""
    need = space_needed(size_mib, files)
    found = os.statvfs(nearest_existing(scratch_dir))
    free = found.f_bavail * found.f_frsize
    if free < need:
        raise ScratchRefused(
            f"not enough free space in {scratch_dir}: the fio jobs need {_mib(need)} "
            f"({files} x {size_mib:g} MiB files plus margin), {_mib(free)} free"
        )


def _create_missing(path: str) -> list[str]:
    """Create `path` and its missing parents (mode 0700); the ones created, deepest first."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.exists(current):
        missing.append(current)
        current = os.path.dirname(current)
    for directory in reversed(missing):
        os.mkdir(directory, 0o700)
    return missing


def make_job_dir(scratch_dir: str) -> tuple[str, list[str]]:
    """A fresh `dcctl-fio-<random>` directory inside scratch_dir (created if missing).

    Returns it and the scratch directories this call created, so they can go too.
    """
    created = _create_missing(scratch_dir)
    return tempfile.mkdtemp(prefix=JOB_DIR_PREFIX, dir=scratch_dir), created


def remove_job_dir(job_dir: str, created: list[str]) -> str | None:
    """Remove the job directory and the emptied scratch directories dcctl created.

    Returns None, or one line saying what could not be removed.
    """
    if not os.path.basename(job_dir).startswith(JOB_DIR_PREFIX):
        raise ValueError(f"not a dcctl fio directory: {job_dir}")
    problem = None
    try:
        shutil.rmtree(job_dir)
    except FileNotFoundError:
        pass  # already gone: the cleanup guard or an earlier call got there first
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)  # still remove all that can be
        problem = f"could not remove all of {job_dir}: {exc}"
    for directory in created:
        try:
            os.rmdir(directory)
        except OSError:
            break  # something else lives there now: it stays
    return problem
