"""Keep generated tables in README.md current: `--write` regenerates them, `--check` fails on drift.

Blocks are delimited by `<!-- generated:NAME -->` ... `<!-- end:NAME -->`; each NAME maps to a
command whose output is the table (today: the metrics table, generated from suanli.metrics).
"""

from __future__ import annotations

import argparse
import difflib
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GENERATORS = {"metrics": [sys.executable, "-m", "suanli.metrics", "--markdown"]}


def render(text: str) -> str:
    for name, command in GENERATORS.items():
        table = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- generated:{name} --> ... <!-- end:{name} --> block")
        text = pattern.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff if README.md is stale")
    args = parser.parse_args()
    current = README.read_text(encoding="utf-8")
    fresh = render(current)
    if args.check:
        if fresh != current:
            sys.stdout.writelines(
                difflib.unified_diff(
                    current.splitlines(True), fresh.splitlines(True), "README.md", "generated"
                )
            )
            print("README.md tables are stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
