"""How user input reads inside a one-line error message."""

from __future__ import annotations

# Longer text is cut: an error is one readable line, whatever the value it quotes.
SHOWN_CHARS = 60


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as it reads in a message: cut after `limit` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"
