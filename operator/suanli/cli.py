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

    run = commands.add_parser("run", help="the operator", description="Run the Suanli operator (kopf, cluster-wide).")
    run.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--metrics-port", type=int, default=9090, metavar="N", help="Prometheus /metrics port; 0: off")
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR", help="address /metrics listens on")
    run.add_argument("--health-port", type=int, default=8080, metavar="N", help="liveness /healthz port; 0: off")
    run.add_argument("--health-address", default="0.0.0.0", metavar="ADDR", help="address /healthz listens on")
    run.add_argument("--config", metavar="FILE", help="YAML settings (the Settings tree; defaults otherwise)")
    run.add_argument("--namespace", default="default", metavar="NS", help="namespace for ComputeCenter events")
    run.add_argument("--peering", metavar="NAME", help="kopf peering name for several replicas (default: standalone)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    explain = commands.add_parser("explain", help="why a live job is where it is, or why it waits")
    explain.add_argument("target", metavar="NAMESPACE/NAME")
    explain.add_argument("--kubeconfig", metavar="PATH")
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
    if args.command == "run":
        from suanli.commands import run

        return run.run(args)
    if args.command == "explain":
        from suanli.commands import explain

        return explain.run(args.target, args.kubeconfig)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
