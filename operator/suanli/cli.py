"""The `suanli` command: plan, simulate, run (the operator) and explain.

Argument parsing and dispatch only; each command lives in its own module.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import suanli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="suanli",
        description="Place accelerator jobs across compute centers by accelerator fit, data locality and energy.",
    )
    parser.add_argument("--version", action="version", version=f"suanli {suanli.__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
