"""`KUBECTL_EXTERNAL_DIFF` program that ignores `status`, as a GitOps diff does for a controller's status.

    KUBECTL_EXTERNAL_DIFF="python tests/tools/spec_diff.py" kubectl diff --server-side -f manifests/

kubectl calls it with two folders (LIVE, MERGED) holding one YAML file per object. Each object is
compared without `status` and the fields the API server changes on every write
(`metadata.managedFields`, `resourceVersion`); a unified diff is printed and the exit code is 1
when anything else differs (kubectl then exits 1 too), 0 otherwise.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

VOLATILE = ("managedFields", "resourceVersion")


def comparable(path: Path) -> str:
    if not path.exists():
        return ""
    obj: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    obj.pop("status", None)
    for key in VOLATILE:
        obj.get("metadata", {}).pop(key, None)
    return yaml.safe_dump(obj, sort_keys=True)


def main(argv: list[str]) -> int:
    live, merged = Path(argv[1]), Path(argv[2])
    changed = 0
    for name in sorted({p.name for p in live.iterdir()} | {p.name for p in merged.iterdir()}):
        before, after = comparable(live / name), comparable(merged / name)
        if before != after:
            changed = 1
            sys.stdout.writelines(
                difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"live/{name}", f"merged/{name}")
            )
    return changed


if __name__ == "__main__":
    sys.exit(main(sys.argv))
