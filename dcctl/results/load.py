"""Reads a stored run back: by id, by unique id prefix, `latest`, or a path to a run dir or a
run.json. A run killed outright (SIGKILL, a power cut) left no run.json, but every host that
landed has its file: the run is rebuilt from those, marked interrupted, with a notice saying so.

Every failure is one InputError line naming where it looked and what to do (exit 2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dcctl.errors import InputError

LATEST = "latest"
RUN_FILE = "run.json"
HOSTS_DIR = "hosts"
_SCHEMA = "dcctl.run/1"
# store.new_run_id: "20260101T120000Z-check-1a2b".
_RUN_ID = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<command>[a-z-]+)-[0-9a-f]{4}$")
# An ambiguous prefix names this many of the runs it matches.
_NAMED = 5
_FIND_IDS = "`dcctl history` lists recent run ids"


@dataclass(frozen=True)
class StoredRun:
    """A run read back: its document, the directory it came from, and a notice (one line)
    when the document is not the run.json the run wrote (rebuilt from host files)."""

    document: dict[str, Any]
    run_dir: Path
    notice: str | None = None


def load_run(state_dir: Path, ref: str) -> dict[str, Any]:
    """The run document `ref` names (see find_run); any notice is dropped."""
    return find_run(state_dir, ref).document


def find_run(state_dir: Path, ref: str) -> StoredRun:
    """`ref`: a run id, a unique run-id prefix, "latest", or a path to a run dir or run.json."""
    runs = state_dir / "runs"
    if ref == LATEST:
        return _read_run_dir(_latest(runs), latest=True)
    # A run id first: a bare id is never read as a path relative to the working directory.
    if _is_plain_name(ref) and (runs / ref).is_dir():
        return _read_run_dir(runs / ref)
    path = Path(ref).expanduser()
    if not _is_plain_name(ref) or ref.endswith(".json") or path.exists():
        return _read_path(path)
    return _read_run_dir(_by_prefix(runs, ref))


def _is_plain_name(ref: str) -> bool:
    return bool(ref) and "/" not in ref and ref not in (".", "..")


def _read_path(path: Path) -> StoredRun:
    if path.is_dir():
        return _read_run_dir(path)
    if path.is_file():
        return StoredRun(_read_document(path), path.parent)
    raise InputError(f"{path}: no such run directory or run.json (give a run id, or latest)")


def _read_run_dir(run_dir: Path, latest: bool = False) -> StoredRun:
    run_file = run_dir / RUN_FILE
    if run_file.is_file():
        return StoredRun(_read_document(run_file), run_dir)
    hosts_dir = run_dir / HOSTS_DIR
    if not hosts_dir.is_dir():
        raise InputError(
            f"{run_dir} is not a run directory: it has neither {RUN_FILE} nor {HOSTS_DIR}/ "
            "(give a run id, latest, or a run directory)"
        )
    document, unreadable = _rebuild(run_dir)
    which = "the latest run" if latest else "run"
    notice = (
        f"{which} {run_dir.name} has no {RUN_FILE} (killed, or still running): rebuilt from "
        f"its {len(document['hosts'])} host file(s) as interrupted; cluster results and the "
        "step list are only in run.json"
    )
    if unreadable:
        notice += f"; {unreadable} unreadable host file(s) skipped"
    return StoredRun(document, run_dir, notice)


def _read_document(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"cannot read {path}: {reason}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON (line {exc.lineno}: {exc.msg}); the file is damaged, "
            "render another run"
        ) from None
    problem = _shape_problem(document)
    if problem is not None:
        raise InputError(f"{path}: not a dcctl run document ({problem})")
    assert isinstance(document, dict)
    return document


def _shape_problem(document: Any) -> str | None:
    """What makes `document` unusable for the renderers, or None. Not the full schema (no
    jsonschema at run time): the keys every renderer walks."""
    if not isinstance(document, dict):
        return "expected a JSON object"
    schema = document.get("schema")
    if schema != _SCHEMA:
        if isinstance(schema, str) and schema.startswith("dcctl.run/"):
            return f"schema {schema}, from a newer dcctl: render it with that version"
        return f"schema {schema!r}, expected {_SCHEMA}"
    if not isinstance(document.get("hosts"), list) or not all(
        isinstance(host, dict) and isinstance(host.get("results"), list)
        for host in document["hosts"]
    ):
        return "hosts: expected a list of host objects with results"
    if not isinstance(document.get("summary"), dict):
        return "summary: expected an object"
    return None


def _run_dirs(runs: Path) -> list[Path]:
    try:
        return [entry for entry in runs.iterdir() if entry.is_dir()]
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(
            f"cannot list {runs}: {exc.strerror or exc} (use --state-dir DIR)"
        ) from None


def _has_results(run_dir: Path) -> bool:
    """run.json, or at least one host file: a dir made by a run that died before any host
    landed has nothing to show."""
    if (run_dir / RUN_FILE).is_file():
        return True
    try:
        return any(path.suffix == ".json" for path in (run_dir / HOSTS_DIR).iterdir())
    except OSError:
        return False


def _started(run_dir: Path) -> tuple[str, float]:
    """Newest first by the id's UTC stamp; runs started in the same second by the directory's
    modification time (the id's tail is random)."""
    match = _RUN_ID.match(run_dir.name)
    try:
        mtime = run_dir.stat().st_mtime
    except OSError:
        mtime = 0.0
    stamp = match["stamp"] if match else _stamp(mtime)
    return stamp, mtime


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _latest(runs: Path) -> Path:
    candidates = [run_dir for run_dir in _run_dirs(runs) if _has_results(run_dir)]
    if not candidates:
        raise InputError(
            f"no runs in {runs} (run `dcctl check` first, or point --state-dir at the state "
            "dir that holds them)"
        )
    return max(candidates, key=_started)


def _by_prefix(runs: Path, prefix: str) -> Path:
    matches = sorted(
        (run_dir for run_dir in _run_dirs(runs) if run_dir.name.startswith(prefix)),
        key=_started,
        reverse=True,
    )
    if not matches:
        raise InputError(
            f"no run {prefix!r} in {runs} ({_FIND_IDS}; or give latest, or a path to a run dir)"
        )
    if len(matches) > 1:
        named = ", ".join(run_dir.name for run_dir in matches[:_NAMED])
        more = f" and {len(matches) - _NAMED} more" if len(matches) > _NAMED else ""
        raise InputError(
            f"run id prefix {prefix!r} matches {len(matches)} runs in {runs}: {named}{more} "
            "(give more of the id)"
        )
    return matches[0]


def _rebuild(run_dir: Path) -> tuple[dict[str, Any], int]:
    """A run document from the host files of a run that never wrote run.json, and how many
    host files could not be read. Each host file holds that host's document over every step
    it finished (the recorder rewrites it as each step lands)."""
    from dcctl.results.document import RunMeta, run_document

    hosts: list[dict[str, Any]] = []
    unreadable = 0
    newest = 0.0
    for path in sorted((run_dir / HOSTS_DIR).glob("*.json")):
        try:
            host = json.loads(path.read_text(encoding="utf-8"))
            newest = max(newest, path.stat().st_mtime)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            unreadable += 1
            continue
        if _host_problem(host):
            unreadable += 1
            continue
        hosts.append(host)
    match = _RUN_ID.match(run_dir.name)
    try:
        dir_mtime = run_dir.stat().st_mtime
    except OSError:
        dir_mtime = 0.0
    started = (
        datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        if match
        else datetime.fromtimestamp(dir_mtime, timezone.utc)
    )
    finished = max(started, datetime.fromtimestamp(newest, timezone.utc)) if newest else started
    meta = RunMeta(
        run_id=run_dir.name,
        command=match["command"] if match else "unknown",
        inventory="unknown (rebuilt from host files)",
        started_at=started,
    )
    return run_document(meta, hosts, interrupted=True, finished_at=finished), unreadable


def _host_problem(host: Any) -> bool:
    return not (
        isinstance(host, dict)
        and isinstance(host.get("name"), str)
        and host.get("status") in ("passed", "failed", "error")
        and isinstance(host.get("results"), list)
        and all(isinstance(r, dict) and isinstance(r.get("status"), str) for r in host["results"])
        and "error" in host
    )
