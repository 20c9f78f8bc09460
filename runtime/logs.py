"""Log lines that a stranger's input cannot forge: ids, keys and error texts are escaped."""

from __future__ import annotations

_MAX_CHARS = 500


def printable(text: str, *, limit: int = _MAX_CHARS) -> str:
    """`text` with control characters (newlines included) escaped and its length capped."""
    if text.isprintable() and len(text) <= limit:
        return text
    escaped = text.encode("unicode_escape", errors="backslashreplace").decode("ascii")
    return escaped if len(escaped) <= limit else escaped[:limit] + "..."
