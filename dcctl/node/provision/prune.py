"""The `prune` step: old node runtimes and their leftovers in the node's dcctl cache.

Only what dcctl's run and upload scripts (dcctl.fleet.runtime) make is touched:
`runtime-<16 hex>` directories other than the one kept, and `.runtime-*` upload temporaries
older than an hour (a younger one may be an upload in progress). Everything else stays: fio's
version cache, anything a person put there.

Two prunes may run at once on a home shared over NFS (one per node): an entry the other one
removed first, whole or in part, counts as removed here, never as a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from typing import Any

from dcctl.node.probes.software import NODE_CACHE_ENV
from dcctl.node.provision.result import step

RUNTIME_RE = re.compile(r"runtime-([0-9a-f]{16})")
TEMP_PREFIX = ".runtime-"
TEMP_MIN_AGE_S = 3600.0
MIB = 1024**2


def cache_dir() -> str:
    """The node's dcctl cache, as the run script names it."""
    # The run script passes it down; by hand, the same rule as its ${XDG_CACHE_HOME:-...}.
    given = os.environ.get(NODE_CACHE_ENV)
    if given:
        return given
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dcctl")


def _running_runtime() -> str | None:
    """The `runtime-<digest>` directory this code runs from, when it runs from one."""
    here = os.path.abspath(__file__)
    for _ in range(4):  # runtime-<digest>/dcctl/node/provision/prune.py
        here = os.path.dirname(here)
    name = os.path.basename(here)
    return name if RUNTIME_RE.fullmatch(name) else None


def prunable(cache: str, keep_runtime: str | None, now: float) -> list[str]:
    """The entries of `cache` that prune removes, by name, sorted."""
    keep = {f"runtime-{keep_runtime}" if keep_runtime else None, _running_runtime()}
    try:
        names = os.listdir(cache)
    except FileNotFoundError:
        return []
    found = []
    for name in sorted(names):
        old_runtime = RUNTIME_RE.fullmatch(name) is not None and name not in keep
        if old_runtime or (
            name.startswith(TEMP_PREFIX) and _age(cache, name, now) > TEMP_MIN_AGE_S
        ):
            found.append(name)
    return found


def _age(cache: str, name: str, now: float) -> float:
    try:
        return now - os.lstat(os.path.join(cache, name)).st_mtime
    except FileNotFoundError:  # an upload that finished (renamed) while we looked
        return 0.0


def _size(path: str) -> int:
    """Bytes under `path`; what is gone meanwhile (another prune) counts nothing."""
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            return os.lstat(path).st_size
    except FileNotFoundError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):  # os.walk skips what it cannot list
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _gone_is_removed(exc: BaseException) -> None:
    if not isinstance(exc, FileNotFoundError):
        raise exc


def _rmtree(path: str) -> None:
    """shutil.rmtree, where a file or directory already removed by another prune is fine."""
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda _func, _path, exc: _gone_is_removed(exc))
    else:
        shutil.rmtree(path, onerror=lambda _func, _path, info: _gone_is_removed(info[1]))


def _remove(path: str) -> None:
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)  # a link named like a runtime: the link goes, never its target
        else:
            _rmtree(path)
    except FileNotFoundError:
        return  # another prune was first: removed all the same


def prune_step(keep_runtime: str | None, check: bool, now: float | None = None) -> dict[str, Any]:
    cache = cache_dir()
    names = prunable(cache, keep_runtime, time.time() if now is None else now)
    if not names:
        return step("prune", "ok", f"nothing to prune in {cache}")
    paths = [os.path.join(cache, name) for name in names]
    size = sum(_size(path) for path in paths)
    runtimes = sum(1 for name in names if not name.startswith(TEMP_PREFIX))
    what = f"{runtimes} old runtime(s)"
    if len(names) > runtimes:
        what += f" and {len(names) - runtimes} unfinished upload(s)"
    if check:
        return step("prune", "changed", f"would remove {what}, {size / MIB:.1f} MiB, from {cache}")
    failed = []
    for path in paths:
        try:
            _remove(path)
        except OSError as exc:
            failed.append(f"{os.path.basename(path)}: {exc.strerror}")
    if failed:
        return step("prune", "failed", f"could not remove {'; '.join(failed)}")
    return step("prune", "changed", f"removed {what}, {size / MIB:.1f} MiB, from {cache}")
