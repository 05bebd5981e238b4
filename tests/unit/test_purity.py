"""The pure core reads no clock, no environment and does no I/O (checked on the source)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PURE = ["api", "catalog", "scoring", "placement", "ledger"]
ROOT = pathlib.Path(__file__).resolve().parents[2] / "operator" / "suanli"
FORBIDDEN_CALLS = {
    ("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("time", "sleep"),
    ("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
    ("os", "getenv"), ("os", "system"), ("random", "random"), ("random", "seed"),
}
FORBIDDEN_NAMES = {("os", "environ")}
FORBIDDEN_BUILTINS = {"open", "input", "print"}


def _files() -> list[pathlib.Path]:
    files = [ROOT / "settings.py", ROOT / "members" / "credentials.py"]
    for pkg in PURE:
        files.extend(sorted((ROOT / pkg).rglob("*.py")))
    return files


def _violations(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
            pair = (owner, node.attr)
            if pair in FORBIDDEN_CALLS or pair in FORBIDDEN_NAMES:
                found.append(f"{path.name}:{node.lineno}: {owner}.{node.attr}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_BUILTINS:
            found.append(f"{path.name}:{node.lineno}: {node.func.id}()")
    return found


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_reads_no_clock_env_or_files(path: pathlib.Path) -> None:
    assert _violations(path) == []


def test_checker_catches_a_clock_read(tmp_path: pathlib.Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import datetime\nimport os\nx = datetime.datetime.now()\ny = os.environ['A']\nopen('f')\n")
    assert len(_violations(bad)) == 3
