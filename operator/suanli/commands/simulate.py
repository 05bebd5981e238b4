"""`suanli simulate`: replay a trace on a virtual clock through the same core, policy by policy."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from suanli import manifest_files
from suanli import settings as settings_mod
from suanli.api import manifests
from suanli.api import queue as queue_api
from suanli.scoring import fleet as fleet_mod
from suanli.sim import metrics, oracle, replay, traces
from suanli.sim import options as options_mod

Queues = dict[str, queue_api.ComputeQueueSpec]


def load(
    centers: Sequence[str], trace: Sequence[str], trace_format: str, option_pairs: Sequence[str]
) -> tuple[fleet_mod.Fleet, traces.Trace, Queues]:
    """The fleet, the trace's jobs and the ComputeQueues given with the centers (each job names the one
    that admits it, or none); ValueError (or InvalidManifests) naming what is wrong."""
    loaded = manifest_files.load(centers)
    if not loaded.centers:
        raise ValueError(f"--centers {', '.join(centers)}: no ComputeCenter found; see crds/examples/simulate")
    queues = {q.name: q.spec for q in loaded.queues}
    opts = options_mod.parse(trace_format, option_pairs)
    config = settings_mod.Settings()
    if isinstance(opts, options_mod.AlibabaOptions):
        if len(trace) != 1:
            raise ValueError("--trace: an alibaba-gpu-2023 trace is one CSV file (or the folder holding it)")
        fleet = fleet_mod.build(loaded.centers)
        jobs = traces.load_alibaba(trace[0], fleet, opts)
        return fleet, traces.assign_queues(jobs, list(queues), dict(opts.queues), opts.queue_seed,
                                                   opts.queue_assignment), queues
    jobs_in_trace = manifest_files.load(trace).jobs
    extra = [j.spec.data.region for j in jobs_in_trace if j.spec.data.region]
    fleet = fleet_mod.build(loaded.centers, extra_regions=extra)
    return fleet, traces.load_computejobs(trace, fleet, opts, config, queues, loaded.namespaces), queues


def simulate(
    fleet: fleet_mod.Fleet,
    trace: traces.Trace,
    policies: Sequence[str],
    seed: int = 0,
    progress: Any = None,
    queues: Queues | None = None,
) -> tuple[dict[str, Any], list[replay.Run]]:
    """The `-o json` document and the runs behind it."""
    runs = []
    floor = oracle.carbon_floor(fleet, trace.jobs)
    for policy in policies:
        callback = progress(policy, len(trace.jobs)) if progress is not None else None
        runs.append(replay.replay(fleet, trace.jobs, policy, seed=seed, progress=callback, queues=queues))
    doc = {"policies": {run.policy: metrics.summary(run, floor) for run in runs}, "skipped": dict(trace.skipped),
           "oracle": {"carbonKg": round(float(floor.sum()), 3),
                      "rule": "each job alone on its cleanest allowed pool at its cleanest hour; no capacity, no wait"}}
    return doc, runs


def _table(doc: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="suanli simulate")
    columns = [
        ("POLICY", None),
        ("JOBS", "jobs"),
        ("DONE", "completed"),
        ("UNSCHED", "unschedulable"),
        ("kWh", "energyKWh"),
        ("kgCO2e", "carbonKg"),
        ("xORACLE", "carbonVsOracle"),
        ("COST", "cost"),
        ("WAIT mean s", "meanWaitSeconds"),
        ("WAIT p95 s", "p95WaitSeconds"),
        ("WAIT/ACC s", "acceleratorWeightedWaitSeconds"),
        ("JCT mean s", "meanJCTSeconds"),
        ("UTIL", "utilization"),
        ("DEADLINE MISSES", "deadlineMisses"),
        ("OVERSUB", "maxPoolOversubscription"),
    ]
    for title, _ in columns:
        table.add_column(title, justify="right" if title != "POLICY" else "left")
    for name, row in doc["policies"].items():
        cells = [name]
        for _, key in columns[1:]:
            value = row.get(key, "-")
            if isinstance(value, str):
                cells.append(value)
                continue
            cells.append(f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")
        table.add_row(*cells)
    console = Console(file=out, width=200 if not out.isatty() else None)
    console.print(table)
    by_size = "; ".join(f"{name} " + ", ".join(f"{n}: {w:,.0f} s" for n, w in row["meanWaitSecondsByAccelerators"].items())
                        for name, row in doc["policies"].items())
    console.print(f"WAIT/ACC: the mean wait with each job counted once per accelerator it asked for; mean wait by "
                  f"accelerators asked for: {by_size}")
    if doc.get("oracle"):
        console.print(f"carbon oracle (a lower bound: {doc['oracle']['rule']}): {doc['oracle']['carbonKg']:,.2f} kgCO2e "
                      "for every job; xORACLE: a policy's carbon over the bound for the jobs it completed")
    for name, row in doc["policies"].items():
        if row.get("queues"):
            console.print(_queue_table(name, row))
    if doc.get("skipped"):
        skipped = ", ".join(f"{k} {v}" for k, v in doc["skipped"].items())
        console.print(f"trace rows left out: {skipped} (see suanli/sim/traces.py)")


def _queue_table(policy: str, row: dict[str, Any]) -> Any:
    from rich.table import Table

    fairness = row["fairness"]
    jain = fairness["jainIndex"]
    title = (f"{policy}: queues (busy period {fairness['busySeconds'] / 3600:,.1f} h; Jain's index "
             f"{'-' if jain is None else f'{jain:.3f}'}, time-weighted {fairness['meanJainIndex'] or 0:.3f})")
    table = Table(title=title)
    columns = [("QUEUE", "name"), ("JOBS", "jobs"), ("DONE", "completed"), ("WAIT mean s", "meanWaitSeconds"),
               ("WAIT p95 s", "p95WaitSeconds"), ("CU-h", "computeUnitHours"), ("ACC-h", "acceleratorHours"),
               ("kWh", "energyKWh"), ("kgCO2e", "carbonKg"), ("COST", "cost"), ("BUSY SHARE", "busyShare"),
               ("OVER LIMIT", "maxOverLimit")]
    for title_, _ in columns:
        table.add_column(title_, justify="left" if title_ == "QUEUE" else "right")
    for q in row["queues"]:
        table.add_row(*(str(q[k]) if isinstance(q[k], str) else f"{q[k]:,}" if isinstance(q[k], int)
                        else f"{q[k]:,.2f}" for _, k in columns))
    return table


class _Progress:
    """A rich progress bar on stderr, one task per policy; nothing when stderr is not a terminal."""

    def __init__(self, err: TextIO):
        from rich.console import Console
        from rich.progress import Progress

        self.bar = Progress(console=Console(file=err), transient=True)

    def __enter__(self) -> _Progress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def __call__(self, policy: str, total: int) -> Any:
        task = self.bar.add_task(policy, total=total)
        return lambda done: self.bar.update(task, completed=done)


def run(
    centers: Sequence[str],
    trace: Sequence[str],
    trace_format: str,
    policies: Sequence[str],
    output: str = "table",
    report_dir: str | None = None,
    option_pairs: Sequence[str] = (),
    seed: int = 0,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    unknown = [p for p in policies if p not in replay.POLICIES]
    if unknown:
        print(
            f"suanli simulate: unknown --policy {', '.join(unknown)}; use {', '.join(replay.POLICIES)}", file=err
        )
        return 2
    try:
        fleet, loaded, queues = load(centers, trace, trace_format, option_pairs)
    except manifests.InvalidManifests as exc:
        manifest_files.print_errors("simulate", exc, "nothing was simulated", err)
        return 2
    except ValueError as exc:
        print(f"suanli simulate: {exc}", file=err)
        return 2
    policies = list(dict.fromkeys(policies))
    if err.isatty():
        with _Progress(err) as bar:
            doc, runs = simulate(fleet, loaded, policies, seed, bar, queues)
    else:
        doc, runs = simulate(fleet, loaded, policies, seed, queues=queues)
    if output == "json":
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        _table(doc, out)
    if report_dir is not None:
        from suanli.sim import report

        header = [
            f"Trace: `{loaded.source}` ({trace_format}), {len(loaded.jobs)} jobs; rows left out: "
            + (", ".join(f"{k} {v}" for k, v in loaded.skipped.items()) or "none")
            + ".",
            f"Fleet: {len(fleet.centers)} centers, {fleet.size} pools, "
            f"{sum(p.expected_nodes * p.accelerators_per_node for p in fleet.pools)} accelerators.",
            f"Options: {' '.join(option_pairs) or 'defaults'}; seed {seed}.",
        ]
        page = report.write(report_dir, doc, runs, header, {r.policy: metrics.by_center(r) for r in runs})
        print(f"report written to {page}", file=err)
    return 0
