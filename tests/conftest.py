"""Makes the test helper modules in tests/ importable from every test folder; shared fixtures."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@pytest.fixture(autouse=True)
def _stop_signals_restored() -> Iterator[None]:
    """A command run in this process (CliRunner) takes the stop signals over and, once its
    output is written, ignores them for good, as the real process does until it exits. Left
    so, every process a later test starts would inherit them ignored, and dcctl keeps a
    signal ignored at start ignored: a Ctrl-C or SIGTERM test would wait for ever."""
    saved = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def slow_python(tmp_path: Path) -> tuple[Path, Path]:
    """An 'interpreter' that records its pid and hangs: a node task that never finishes."""
    pid_file = tmp_path / "slow.pid"
    script = tmp_path / "slow-python"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    script.chmod(0o755)
    return script, pid_file
