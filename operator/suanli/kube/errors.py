"""What an API error means and how it reads in a log line, an Event or a status message. Pure."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException


def short(exc: BaseException) -> str:
    """An exception as one short line: `HTTP 409 Conflict` for an API answer, else its text (cut)."""
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(exc)[:300]


def namespace_gone(exc: BaseException) -> bool:
    """True if a create failed because its namespace is being deleted (403 "... because it is being
    terminated") or is already gone (404 for the namespace itself, not for the object)."""
    if not isinstance(exc, ApiException) or exc.status not in (403, 404):
        return False
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    try:
        doc: Any = json.loads(body)
    except ValueError:
        doc = {}
    details: Any = doc.get("details") if isinstance(doc, dict) else None
    details = details if isinstance(details, dict) else {}
    if exc.status == 403:
        causes = details.get("causes") or []
        return "being terminated" in body or any(
            isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes
        )
    return bool(details.get("kind") == "namespaces")
