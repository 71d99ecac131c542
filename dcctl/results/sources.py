"""The inventory and playbook a run used, kept in its run directory as they were when it ran.

A report shows them as what was used: read again later they may have changed, and a path
named by a run document someone sent is not a file anybody should open. Kept up to
MAX_SOURCE_BYTES each, mode 0600 like the rest of the run directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SOURCES_DIR = "sources"
MAX_SOURCE_BYTES = 1 << 20
# Run document key -> the file kept in the run directory.
SOURCE_FILES = {"inventory": "inventory.yaml", "playbook": "playbook.yaml"}


def read_source_file(path: str | None) -> str | None:
    """The text to keep of a file the run was given: None for no file (the built-in inventory
    is written "<built-in: ...>") or one that cannot be read; a long one cut, and saying so."""
    if not path or path.startswith("<"):
        return None
    try:
        # Non-blocking, and regular files only: an inventory read from a FIFO or a terminal
        # (`-i /dev/stdin`) was consumed by the loader, and opening it again would wait for
        # ever for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    text = data[:MAX_SOURCE_BYTES].decode("utf-8", "replace")
    return (
        text + f"\n# [cut at {MAX_SOURCE_BYTES} bytes]\n" if len(data) > MAX_SOURCE_BYTES else text
    )


def read_sources(run_dir: Path) -> dict[str, str]:
    """Run document key -> the kept text, for each file the run directory holds."""
    found = {}
    for key, name in SOURCE_FILES.items():
        try:
            data = (run_dir / SOURCES_DIR / name).read_bytes()[: 2 * MAX_SOURCE_BYTES]
        except OSError:
            continue
        found[key] = data.decode("utf-8", "replace")
    return found
