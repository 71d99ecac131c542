"""Makes the test helper modules in tests/ importable from every test folder; shared fixtures."""

from __future__ import annotations

import compileall
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PACKAGE_DIR = Path(__file__).parents[1] / "dcctl"


@pytest.fixture(scope="session", autouse=True)
def _package_byte_compiled() -> None:
    """dcctl's bytecode written once, for the many `python -m dcctl` (and worker) processes
    the tests start. Under PYTHONDONTWRITEBYTECODE=1 (set in this machine's environment) none
    of them writes it, so each compiles the modules it imports from source again (~0.3 s of CPU
    apiece).
    Only the cache beside the sources is added: what the processes run is unchanged, and a
    source edited later is recompiled by the interpreter as usual (timestamp check)."""
    compileall.compile_dir(PACKAGE_DIR, quiet=2)


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
