"""`python -m dcctl.node <task> '<json-params>'` (the zipapp's entry point calls the same)."""

from __future__ import annotations

from dcctl.node.main import main

if __name__ == "__main__":
    raise SystemExit(main())
