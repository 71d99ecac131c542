"""The inventory and playbook a run used, kept in its run directory as their loaders read them.

A report shows them as what was used: read again later they may have changed, and a path
named by a run document someone sent is not a file anybody should open. Kept up to
MAX_SOURCE_BYTES each, mode 0600 like the rest of the run directory.
"""

from __future__ import annotations

from pathlib import Path

SOURCES_DIR = "sources"
MAX_SOURCE_BYTES = 1 << 20
# Run document key -> the file kept in the run directory.
SOURCE_FILES = {"inventory": "inventory.yaml", "playbook": "playbook.yaml"}


def source_path(key: str) -> str:
    """Where a run keeps the file its document names under `key`, in its run directory."""
    return f"{SOURCES_DIR}/{SOURCE_FILES[key]}"


def kept_text(text: str) -> str:
    """The text as kept: a long one cut, and saying so (an inventory may be 16 MiB)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= MAX_SOURCE_BYTES:
        return text
    cut = data[:MAX_SOURCE_BYTES].decode("utf-8", "ignore")
    return cut + f"\n# [cut at {MAX_SOURCE_BYTES} bytes]\n"


def read_sources(run_dir: Path) -> dict[str, str]:
    """Run document key -> the kept text, for each file the run directory holds."""
    found = {}
    for key in SOURCE_FILES:
        try:
            data = (run_dir / source_path(key)).read_bytes()[: 2 * MAX_SOURCE_BYTES]
        except OSError:
            continue
        found[key] = data.decode("utf-8", "replace")
    return found
