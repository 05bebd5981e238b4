"""How an API error reads in a log line, an Event or a status message. Pure."""

from __future__ import annotations


def short(exc: BaseException) -> str:
    """An exception as one short line: `HTTP 409 Conflict` for an API answer, else its text (cut)."""
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(exc)[:300]
