"""Filesystem questions the steps share: where a path would be created, and by whom."""

from __future__ import annotations

import os


def nearest_existing(path: str) -> str:
    """`path` or its closest existing ancestor: the directory a creation writes into."""
    current = os.path.abspath(path)
    while not os.path.lexists(current) and os.path.dirname(current) != current:
        current = os.path.dirname(current)
    return current


def can_create(path: str) -> bool:
    """Whether this user can create `path` (and its missing parents) without root."""
    return os.access(nearest_existing(path), os.W_OK | os.X_OK)
