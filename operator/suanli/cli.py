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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plan = commands.add_parser(
        "plan",
        help="what the operator would decide for these jobs on an empty fleet",
        description="Read ComputeCenter and ComputeJob manifests and print, in queue order, where each job "
        "would go now, each bound job consuming capacity and energy budget before the next.",
    )
    plan.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="YAML file or folder of manifests (repeatable)",
    )
    plan.add_argument("-o", "--output", choices=("table", "json"), default="table")
    plan.add_argument("--now", metavar="RFC3339", help="plan as of this instant (default: the current time)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "plan":
        from suanli.commands import plan

        return plan.run(args.paths, args.output, args.now)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
