"""The `suanli` command: plan, simulate, run (the operator), explain and join; and `kubectl suanli`.

Argument parsing and dispatch only; each command lives in its own module. `kubectl-suanli` (installed
with the package, so kubectl finds it as a plugin) is the same parser with the commands a kubectl
user runs against a cluster or on manifests: explain, plan, join.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

import suanli

# How `suanli run` replicas agree on one active scheduler. kopf's peering is not one of them: it
# pauses only kopf's own handlers, while the scheduler and the plain watches would go on binding.
LEADER_ELECTION_MODES = ("lease", "none")
LOG_FORMATS = ("text", "json")  # suanli.logs.FORMATS (not imported here: `suanli plan` stays light)


class _Removed(argparse.Action):
    """A flag that no longer exists: refuse it, saying what to use instead (hidden from --help)."""

    def __init__(self, option_strings: Sequence[str], dest: str, instead: str = "", **kwargs: object) -> None:
        self.instead = instead
        super().__init__(option_strings, dest, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string} was removed: {self.instead}")


COMMANDS = ("plan", "simulate", "run", "join", "explain")
KUBECTL_COMMANDS = ("explain", "plan", "join")  # `kubectl suanli ...`: the ones a kubectl user needs
KUBECTL_PROG = "kubectl suanli"


def _kubeconfig_flags(parser: argparse.ArgumentParser, what: str = "the cluster") -> None:
    parser.add_argument("--kubeconfig", metavar="PATH",
                        help=f"kubeconfig of {what} (default: $KUBECONFIG, else ~/.kube/config, as kubectl)")
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use (default: its current context)")


def build_parser(prog: str = "suanli", commands_offered: Sequence[str] = COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Place accelerator jobs across compute centers by accelerator fit, data locality and energy.",
    )
    parser.add_argument("--version", action="version", version=f"suanli {suanli.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand, if this program offers it (else a parser that is built and thrown away)."""
        if name not in commands_offered:
            return argparse.ArgumentParser(add_help=False)
        return subparsers.add_parser(name, **kwargs)

    plan = add_command(
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

    sim = add_command(
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

    run = add_command("run", help="the operator", description="Run the Suanli operator (kopf, cluster-wide).")
    run.add_argument("--kubeconfig", metavar="PATH", help="kubeconfig (default: in-cluster, then ~/.kube/config)")
    run.add_argument("--metrics-port", type=int, default=9090, metavar="N", help="Prometheus /metrics port; 0: off")
    run.add_argument("--metrics-address", default="0.0.0.0", metavar="ADDR", help="address /metrics listens on")
    run.add_argument("--health-port", type=int, default=8080, metavar="N", help="liveness /healthz port; 0: off")
    run.add_argument("--health-address", default="0.0.0.0", metavar="ADDR", help="address /healthz listens on")
    run.add_argument("--config", metavar="FILE", help="YAML settings (the Settings tree; defaults otherwise)")
    run.add_argument("--namespace", default="default", metavar="NS", help="the operator's namespace: Events about ComputeCenters go there, and it is the only "
                     "namespace whose Secrets (member clusters' kubeconfigs) the operator reads")
    run.add_argument(
        "--peering",
        action=_Removed,
        instead="kopf peering paused only kopf's own handlers while the scheduler went on binding; "
        "run several replicas with --leader-election lease (the chart's leaderElection.mode=lease)",
    )
    run.add_argument(
        "--leader-election",
        choices=LEADER_ELECTION_MODES,
        default=os.environ.get("SUANLI_LEADER_ELECTION") or "none",
        help="lease: take a coordination.k8s.io Lease before doing anything, exit when it is lost (several "
        "replicas); none: no Lease, for exactly one replica (default: $SUANLI_LEADER_ELECTION, else none)",
    )
    run.add_argument("--lease-name", default=os.environ.get("SUANLI_LEASE_NAME") or "suanli-operator-leader",
                     metavar="NAME", help="the Lease's name (default: $SUANLI_LEASE_NAME, else suanli-operator-leader)")
    run.add_argument("--lease-namespace", default=os.environ.get("SUANLI_NAMESPACE") or None, metavar="NS",
                     help="the Lease's namespace (default: $SUANLI_NAMESPACE, else --namespace)")
    run.add_argument("--relist-seconds", type=float, default=300, metavar="S",
                     help="safety net: LIST everything (the hub's cluster and each member's) this often and drop "
                     "cached objects whose deletion no watch event delivered (ComputeCenters and Nodes first a "
                     "minute after startup); 0: off")
    run.add_argument("--identity", default=None, metavar="ID",
                     help="this replica's name in the Lease (default: $SUANLI_POD_NAME, else host name and a random suffix)")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument("--log-format", choices=LOG_FORMATS, default=os.environ.get("SUANLI_LOG_FORMAT") or "text",
                     help="text: one line per record for people; json: one JSON object per line (time, level, "
                     "logger, message, and namespace/name when the record is about an object) for log shippers "
                     "(default: $SUANLI_LOG_FORMAT, else text)")

    join = add_command(
        "join",
        help="make a cluster a member of the hub",
        description="Create the hub's identity with least-privilege RBAC in a member cluster, write its kubeconfig "
        "Secret on the hub and point the ComputeCenter at it.",
    )
    join.add_argument("center", metavar="CENTER", help="the ComputeCenter (on the hub) whose cluster this is")
    join.add_argument("--member-kubeconfig", required=True, metavar="PATH",
                      help="kubeconfig of the member cluster, with rights to create namespaces, service accounts and RBAC")
    _kubeconfig_flags(join, "the hub")
    join.add_argument("--member-context", metavar="NAME", help="the context of --member-kubeconfig (default: its current one)")
    join.add_argument("-n", "--namespace", default=os.environ.get("SUANLI_NAMESPACE") or "suanli-system", metavar="NS",
                      help="the operator's namespace on the hub, where the Secret goes (default: $SUANLI_NAMESPACE, "
                      "else suanli-system)")
    join.add_argument("--member-server", metavar="URL",
                      help="the member's API server as the hub reaches it (default: the one in --member-kubeconfig)")
    join.add_argument("--token-secret", metavar="NS/NAME",
                      help="the member side exists already (helm install ... --set mode=member): create nothing in the "
                      "member, take the token and CA from this service-account-token Secret there")
    join.add_argument("--no-namespaces", action="store_true",
                      help="do not let the hub create namespaces in the member (set members.create_namespaces=false too)")
    join.add_argument("--dry-run", action="store_true", help="print the objects instead of creating them")
    join.add_argument("-o", "--output", choices=("yaml",), default="yaml", help="with --dry-run: the format")

    explain = add_command(
        "explain", help="why a live job is where it is, or why it waits",
        description="Print a ComputeJob's placement (center, pool, score and its factors), the candidates, why other "
        "pools were not possible, and its Events.",
    )
    explain.add_argument("target", metavar="NAMESPACE/NAME | NAME",
                         help="the ComputeJob: NAMESPACE/NAME, or NAME in -n NAMESPACE (default: the context's namespace)")
    explain.add_argument("-n", "--namespace", metavar="NS", help="the job's namespace (as kubectl -n)")
    _kubeconfig_flags(explain)
    return parser


def kubectl_main(argv: Sequence[str] | None = None) -> int:
    """`kubectl suanli COMMAND ...` (the kubectl-suanli executable kubectl runs as a plugin)."""
    return main(argv, prog=KUBECTL_PROG, commands_offered=KUBECTL_COMMANDS)


def main(argv: Sequence[str] | None = None, prog: str = "suanli", commands_offered: Sequence[str] = COMMANDS) -> int:
    parser = build_parser(prog, commands_offered)
    args = parser.parse_args(argv)
    if args.command == "run" and args.leader_election not in LEADER_ELECTION_MODES:
        # argparse checks `choices` on the command line only, not on a default from the environment.
        parser.error(
            f"$SUANLI_LEADER_ELECTION={args.leader_election!r} is not a leader-election mode: use "
            f"{' or '.join(LEADER_ELECTION_MODES)} (kopfPeering was removed: it paused only kopf's handlers, "
            f"not the scheduler; several replicas need lease)"
        )
    if args.command == "run" and args.log_format not in LOG_FORMATS:
        parser.error(f"$SUANLI_LOG_FORMAT={args.log_format!r} is not a log format: use {' or '.join(LOG_FORMATS)}")
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
    if args.command == "join":
        from suanli.commands import join

        return join.run(args)
    if args.command == "simulate":
        from suanli.commands import simulate

        return simulate.run(args.centers, args.trace, args.trace_format, args.policy, args.output,
                            args.report_dir, args.trace_option, args.seed)
    if args.command == "run":
        from suanli.commands import run

        return run.run(args)
    if args.command == "explain":
        from suanli.commands import explain

        return explain.run(args.target, args.kubeconfig, context=args.context, namespace=args.namespace)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
