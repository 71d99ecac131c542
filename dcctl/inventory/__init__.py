"""The inventory: which hosts dcctl talks to, how to reach them, and what to expect there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcctl.inventory.loader import BUILTIN_SOURCE, load_inventory
    from dcctl.inventory.patterns import select_hosts

__all__ = ["BUILTIN_SOURCE", "load_inventory", "select_hosts"]

_LAZY = {
    "BUILTIN_SOURCE": "dcctl.inventory.loader",
    "load_inventory": "dcctl.inventory.loader",
    "select_hosts": "dcctl.inventory.patterns",
}


def __getattr__(name: str) -> Any:
    # Loaded on first use: `dcctl --help` imports the Host model but must not pay for PyYAML.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
