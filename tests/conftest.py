"""Makes the test helper modules in tests/ importable from every test folder; shared fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def slow_python(tmp_path: Path) -> tuple[Path, Path]:
    """An 'interpreter' that records its pid and hangs: a node task that never finishes."""
    pid_file = tmp_path / "slow.pid"
    script = tmp_path / "slow-python"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 600\n")
    script.chmod(0o755)
    return script, pid_file
