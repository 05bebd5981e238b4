"""The `suanli` command: plan, simulate, run (the operator) and explain.

Argument parsing and dispatch only; each command lives in its own module.
"""

from __future__ import annotations

import argparse
import os
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

    sim = commands.add_parser(
        "simulate",
        help="replay a trace on a virtual clock and compare policies",
        description="Replay a trace (ComputeJob manifests or the Alibaba GPU trace 2023) on an empty fleet "
        "through the same core as the operator, once per policy, and compare energy, carbon and waits.",
    )
    sim.add_argument("--centers", action="append", required=True, metavar="PATH", help="ComputeCenter YAML file or folder")
    sim.add_argument("--trace", action="append", required=True, metavar="PATH", help="trace file or folder")
    sim.add_argument("--trace-format", choices=("computejobs", "alibaba-gpu-2023"), default="computejobs")
    sim.add_argument("--trace-option", action="append", default=[], metavar="KEY=VALUE", help="trace mapping option")
    sim.add_argument("--policy", action="append", required=True, metavar="NAME",
                     help="balanced, green, fast, local, first-fit, random or least-loaded (repeatable)")
    sim.add_argument("-o", "--output", choices=("table", "json"), default="table")
    sim.add_argument("--report-dir", metavar="DIR", help="write a Markdown report with PNG plots here")
    sim.add_argument("--seed", type=int, default=0, help="seed of the random baseline")

    run = commands.add_parser("run", help="the operator", description="Run the Suanli operator (kopf, cluster-wide).")
    run.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--metrics-port", type=int, default=9090, metavar="N", help="Prometheus /metrics port; 0: off")
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR", help="address /metrics listens on")
    run.add_argument("--health-port", type=int, default=8080, metavar="N", help="liveness /healthz port; 0: off")
    run.add_argument("--health-address", default="0.0.0.0", metavar="ADDR", help="address /healthz listens on")
    run.add_argument("--config", metavar="FILE", help="YAML settings (the Settings tree; defaults otherwise)")
    run.add_argument("--namespace", default="default", metavar="NS", help="namespace for ComputeCenter events")
    run.add_argument("--peering", metavar="NAME", help="kopf peering name for several replicas (default: standalone)")
    run.add_argument(
        "--leader-election",
        choices=("lease", "none", "kopfPeering"),
        default=os.environ.get("SUANLI_LEADER_ELECTION") or "none",
        help="lease: take a coordination.k8s.io Lease before doing anything, exit when it is lost (several "
        "replicas); none / kopfPeering: no Lease (default: $SUANLI_LEADER_ELECTION, else none)",
    )
    run.add_argument("--lease-name", default=os.environ.get("SUANLI_LEASE_NAME") or "suanli-operator-leader",
                     metavar="NAME", help="the Lease's name (default: $SUANLI_LEASE_NAME, else suanli-operator-leader)")
    run.add_argument("--lease-namespace", default=os.environ.get("SUANLI_NAMESPACE") or None, metavar="NS",
                     help="the Lease's namespace (default: $SUANLI_NAMESPACE, else --namespace)")
    run.add_argument("--relist-seconds", type=float, default=300, metavar="S",
                     help="safety net: LIST everything this often and drop cached objects whose deletion "
                     "no watch event delivered (first run a minute after startup); 0: off")
    run.add_argument("--identity", default=None, metavar="ID",
                     help="this replica's name in the Lease (default: $SUANLI_POD_NAME, else host name and a random suffix)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    explain = commands.add_parser("explain", help="why a live job is where it is, or why it waits")
    explain.add_argument("target", metavar="NAMESPACE/NAME")
    explain.add_argument("--kubeconfig", metavar="PATH")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except BrokenPipeError:  # `suanli plan ... | head`: the reader left; not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "plan":
        from suanli.commands import plan

        return plan.run(args.paths, args.output, args.now)
    if args.command == "simulate":
        from suanli.commands import simulate

        return simulate.run(args.centers, args.trace, args.trace_format, args.policy, args.output,
                            args.report_dir, args.trace_option, args.seed)
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
