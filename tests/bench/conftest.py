"""Benchmarks write their results under reports/bench/ (make bench); they are not part of make test."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

REPORTS = pathlib.Path(__file__).resolve().parents[2] / "reports" / "bench"


@pytest.fixture
def write_report():  # type: ignore[no-untyped-def]
    def write(name: str, data: dict[str, Any], markdown: str) -> pathlib.Path:
        REPORTS.mkdir(parents=True, exist_ok=True)
        (REPORTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
        path = REPORTS / f"{name}.md"
        path.write_text(markdown)
        return path

    return write
