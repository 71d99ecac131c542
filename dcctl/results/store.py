"""The run directory: each host's result written atomically the moment it lands, run.json last.

An interrupted run loses nothing already measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
# File systems cap a name at 255 bytes; leave room for the hash, suffix and temp-file prefix.
_MAX_NAME = 200


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
        self.run_dir = state_dir / "runs" / run_id
        _make_private_dirs(state_dir, self.run_dir / "hosts")

    def write_host(self, host_name: str, document: dict[str, Any]) -> Path:
        return _write_json_atomic(self.run_dir / "hosts" / host_file_name(host_name), document)

    def write_run(self, document: dict[str, Any]) -> Path:
        return _write_json_atomic(self.run_dir / "run.json", document)


def _make_private_dirs(top: Path, leaf: Path) -> None:
    """Create top..leaf as 0700; directories that already exist are the user's to keep."""
    levels = [leaf, *leaf.parents]
    for level in reversed(levels[: levels.index(top) + 1]):
        if not level.exists():
            level.mkdir(parents=True, mode=0o700)
            os.chmod(level, 0o700)  # mkdir's mode is masked by the umask


def _write_json_atomic(path: Path, document: dict[str, Any]) -> Path:
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out, indent=2)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, 0o600)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
