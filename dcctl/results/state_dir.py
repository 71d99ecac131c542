"""Where dcctl keeps its runs and the host keys it was told to trust.

Apart from the run store so that `dcctl --help`, which shows this default, loads no hashing.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_state_dir(env: dict[str, str] | None = None) -> Path:
    environ = os.environ if env is None else env
    base = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dcctl"
