"""What `dcctl provision` left on each host: the venv's interpreter, kept in the state dir as
`<state>/provisioned/<host>.json` so that later bench and certify runs use it without an edit
to the inventory. An explicit `python` in the inventory always wins over it.

A record is trusted only while the host is the one it was made for: same address and same
`runtime_venv`. Otherwise the inventory has moved on since, and the record is stale.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcctl.inventory.model import Host
from dcctl.results.store import host_file_name, make_private_dirs, write_text_atomic

PROVISIONED_DIR = "provisioned"
# A record is a few hundred bytes; anything much larger is not one of ours.
_MAX_RECORD_BYTES = 64 * 1024
_FIELDS = ("python", "venv", "address", "provisioned_at")


class RecordUnreadable(ValueError):
    """A record file that is there but cannot be used; the message names the file."""


@dataclass(frozen=True)
class ProvisionRecord:
    python: str
    venv: str
    address: str
    provisioned_at: str

    def fits(self, host: Host) -> bool:
        return self.address == host.address and self.venv == host.runtime_venv


def new_record(host: Host, python: str, now: datetime | None = None) -> ProvisionRecord:
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return ProvisionRecord(
        python=python,
        venv=host.runtime_venv,
        address=host.address,
        provisioned_at=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def record_path(state_dir: Path, host_name: str) -> Path:
    return state_dir / PROVISIONED_DIR / host_file_name(host_name)


def write_record(state_dir: Path, host_name: str, record: ProvisionRecord) -> Path:
    """The record, mode 0600, in a 0700 directory; OSError when the state dir refuses it."""
    path = record_path(state_dir, host_name)
    make_private_dirs(state_dir, path.parent)
    text = json.dumps(dataclasses.asdict(record), indent=2) + "\n"
    write_text_atomic(path, text, 0o600)
    return path


def remove_record(state_dir: Path, host_name: str) -> bool:
    """True if there was one; OSError when it is there and cannot be removed."""
    try:
        record_path(state_dir, host_name).unlink()
    except FileNotFoundError:
        return False
    return True


def read_record(state_dir: Path, host_name: str) -> ProvisionRecord | None:
    """The host's record; None when there is none; RecordUnreadable when it is damaged."""
    path = record_path(state_dir, host_name)
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_RECORD_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RecordUnreadable(f"{path}: {exc.strerror or exc}") from None
    return _parse(path, data)


def _parse(path: Path, data: bytes) -> ProvisionRecord:
    try:
        document: Any = json.loads(data) if len(data) <= _MAX_RECORD_BYTES else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise RecordUnreadable(f"{path}: not a dcctl provision record")
    values = {name: document.get(name) for name in _FIELDS}
    text = {name: value for name, value in values.items() if isinstance(value, str) and value}
    if len(text) != len(_FIELDS):
        raise RecordUnreadable(f"{path}: a field of {', '.join(_FIELDS)} is missing")
    if not text["python"].startswith("/"):
        raise RecordUnreadable(f"{path}: python is not an absolute path")
    return ProvisionRecord(**text)


def with_recorded_python(
    hosts: Iterable[Host], state_dir: Path, warn: Callable[[str], None]
) -> tuple[Host, ...]:
    """`hosts`, each whose inventory leaves `python` unset running the recorded venv's.

    A damaged record costs only itself: `warn` is told, and the host keeps its python."""
    chosen = []
    for host in hosts:
        record = None
        if not host.python_set:
            try:
                record = read_record(state_dir, host.name)
            except RecordUnreadable as exc:
                warn(f"{exc}; ignored (run `dcctl provision` again to rewrite it)")
        if record is not None and record.fits(host):
            host = dataclasses.replace(host, python=record.python)
        chosen.append(host)
    return tuple(chosen)
