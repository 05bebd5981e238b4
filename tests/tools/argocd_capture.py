"""Save a live ComputeJob/ComputeCenter as an Argo CD health fixture (for e2e tests).

    from tests.tools import argocd_capture
    argocd_capture.save(obj, "Healthy", "Succeeded", source="e2e: test_scenario_green_wins")

writes ``<dir>/<kind>-<namespace>-<name>-<status>.json`` in the format of
tests/unit/argocd_fixtures/README.md; ``dir`` defaults to $SUANLI_ARGOCD_FIXTURES_DIR, else
tests/unit/argocd_fixtures. tests/unit/test_argocd_health.py then runs the Lua health checks
on it: real objects, checked against the health the scenario expects.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "argocd_fixtures"
_VOLATILE = ("managedFields", "resourceVersion", "uid", "creationTimestamp")


def save(
    obj: dict[str, Any],
    expected_status: str,
    message_contains: str = "",
    *,
    source: str,
    directory: str | os.PathLike[str] | None = None,
) -> Path:
    target = Path(directory or os.environ.get("SUANLI_ARGOCD_FIXTURES_DIR") or FIXTURES)
    target.mkdir(parents=True, exist_ok=True)
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _VOLATILE}
    clean = {**obj, "metadata": meta}
    parts = [obj["kind"].lower(), meta.get("namespace", ""), meta["name"], expected_status.lower()]
    path = target / ("-".join(p for p in parts if p) + ".json")
    doc = {
        "expectedHealth": {"status": expected_status, "messageContains": message_contains},
        "source": source,
        "object": clean,
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return path
