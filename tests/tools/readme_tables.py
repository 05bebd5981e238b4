"""Keep the generated tables of README.md and docs/*.md current: `--check` fails on drift.

Blocks are delimited by `<!-- generated:NAME -->` ... `<!-- end:NAME -->`; each NAME maps to a
command whose output is the table (today: the metrics table in docs/metrics.md, generated from
suanli.metrics). Each block must appear in exactly one of those files.
"""

from __future__ import annotations

import argparse
import difflib
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
GENERATORS = {"metrics": [sys.executable, "-m", "suanli.metrics", "--markdown"]}


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)


def render(texts: dict[pathlib.Path, str]) -> dict[pathlib.Path, str]:
    fresh = dict(texts)
    for name, command in GENERATORS.items():
        holders = [path for path, text in texts.items() if _pattern(name).search(text)]
        if len(holders) != 1:
            where = ", ".join(str(p.relative_to(ROOT)) for p in holders) or "none of them"
            raise SystemExit(
                f"the <!-- generated:{name} --> ... <!-- end:{name} --> block must be in exactly one of "
                f"README.md and docs/*.md; found in {where}"
            )
        table = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        path = holders[0]
        fresh[path] = _pattern(name).sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), fresh[path])
    return fresh


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 with a diff if a generated table is stale"
    )
    args = parser.parse_args()
    current = {path: path.read_text(encoding="utf-8") for path in FILES}
    fresh = render(current)
    stale = [path for path in FILES if fresh[path] != current[path]]
    if args.check:
        for path in stale:
            name = str(path.relative_to(ROOT))
            sys.stdout.writelines(
                difflib.unified_diff(
                    current[path].splitlines(True), fresh[path].splitlines(True), name, "generated"
                )
            )
        if stale:
            print("generated tables are stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.write_text(fresh[path], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
