"""The run directory: each host's result written atomically the moment it lands, run.json last.

An interrupted run loses nothing already measured. A run that cannot be saved (a full disk, a
read-only or foreign state dir, a path through a file) still runs and is still shown: the
first failed write is kept as a SaveError for the caller to report, and later writes are still
tried, so space freed mid-run saves what comes after.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# File systems cap a name at 255 bytes; leave room for the hash, suffix and temp-file prefix.
_MAX_NAME = 200
# What frees the state dir again, by what stopped the write.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NOT_WRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NOT_A_DIRECTORY = {errno.ENOTDIR, errno.EEXIST}


@dataclass(frozen=True)
class SaveError:
    """The first write of a run that failed: what it was writing, and why."""

    path: Path
    error: OSError

    def __str__(self) -> str:
        blocker = self._file_in_the_way()
        if blocker is not None:
            return f"cannot create {self.path}: {blocker} is a file, not a directory"
        return f"cannot write {self.path}: {self.error.strerror or self.error}"

    @property
    def remedy(self) -> str | None:
        """What frees the state dir again, in a few words, where the error says."""
        code = self.error.errno
        if code in _NO_SPACE:
            return "free space there"
        if code in _NOT_WRITABLE:
            return "make it writable"
        return "move that file away" if self._file_in_the_way() else None

    def _file_in_the_way(self) -> Path | None:
        """The nearest part of the path that exists and is not a directory, if that is why."""
        if self.error.errno not in _NOT_A_DIRECTORY:
            return None
        for level in [self.path, *self.path.parents]:
            if level.exists() or level.is_symlink():
                return None if level.is_dir() else level
        return None


def new_run_id(command: str, now: datetime) -> str:
    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{command}-{secrets.token_hex(2)}"


def host_file_name(host_name: str) -> str:
    """A file name for any host name: names from an inventory may hold '/', '$(...)' and worse."""
    safe = _SAFE_NAME.sub("_", host_name).lstrip(".")[:_MAX_NAME] or "_"
    if safe != host_name:
        safe += "-" + hashlib.sha256(host_name.encode()).hexdigest()[:8]
    return safe + ".json"


class RunStore:
    def __init__(self, state_dir: Path, run_id: str) -> None:
        self.run_id = run_id
        self.state_dir = state_dir
        self.run_dir = state_dir / "runs" / run_id
        # The first write that failed; None while everything is saved.
        self.error: SaveError | None = None
        self.run_saved = False
        self._dirs_made = self._make_dirs()

    def write_host(self, host_name: str, document: dict[str, Any]) -> Path | None:
        return self._write(self.run_dir / "hosts" / host_file_name(host_name), document)

    def write_run(self, document: dict[str, Any]) -> Path | None:
        path = self._write(self.run_dir / "run.json", document)
        self.run_saved = path is not None
        return path

    def write_text(self, relative: str, text: str) -> Path | None:
        """A text file in the run directory (mode 0600), whole or not at all."""
        path = self.run_dir / relative
        self._dirs_made = self._dirs_made or self._make_dirs()
        if not self._dirs_made:
            return None
        try:
            make_private_dirs(self.state_dir, path.parent)
            write_text_atomic(path, text, 0o600)
        except OSError as exc:
            self._failed(path, exc)
            return None
        return path

    def _make_dirs(self) -> bool:
        try:
            make_private_dirs(self.state_dir, self.run_dir / "hosts")
        except OSError as exc:
            self._failed(Path(exc.filename) if exc.filename else self.run_dir, exc)
            return False
        return True

    def _write(self, path: Path, document: dict[str, Any]) -> Path | None:
        """The file written, or None, the failure kept: saving never ends a run. Directories
        that could not be made are tried again at each write (space may have been freed)."""
        self._dirs_made = self._dirs_made or self._make_dirs()
        if not self._dirs_made:
            return None
        try:
            return _write_json_atomic(path, document)
        except OSError as exc:
            self._failed(path, exc)
            return None

    def _failed(self, path: Path, exc: OSError) -> None:
        if self.error is None:
            self.error = SaveError(path, exc)


def make_private_dirs(top: Path, leaf: Path) -> None:
    """Create top..leaf as 0700; directories that already exist are the user's to keep, and
    so are those another run creates at the same moment (two cron jobs on a fresh state dir
    both making `runs/`): only what this call created is made private."""
    levels = [leaf, *leaf.parents]
    for level in reversed(levels[: levels.index(top) + 1]):
        try:
            level.mkdir(parents=True, mode=0o700)
        except FileExistsError:
            if level.is_dir():
                continue
            raise  # a file in the way: the caller names it
        os.chmod(level, 0o700)  # mkdir's mode is masked by the umask


def _write_json_atomic(path: Path, document: dict[str, Any]) -> Path:
    write_text_atomic(path, json.dumps(document, indent=2) + "\n", 0o600)
    return path


def write_text_atomic(path: Path, text: str, mode: int) -> None:
    """`text` at `path` with `mode`, whole or not at all (a temp file in the same directory,
    fsynced, renamed over it); nothing is left behind when it fails."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
