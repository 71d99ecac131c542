"""The inventory: which hosts dcctl talks to, how to reach them, and what to expect there."""

from __future__ import annotations

from dcctl.inventory.loader import BUILTIN_SOURCE, load_inventory
from dcctl.inventory.patterns import select_hosts

__all__ = ["BUILTIN_SOURCE", "load_inventory", "select_hosts"]
