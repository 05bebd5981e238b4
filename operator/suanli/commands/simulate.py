"""`suanli simulate`: replay a trace on a virtual clock through the same core, policy by policy."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from suanli import manifest_files
from suanli import settings as settings_mod
from suanli.api import manifests
from suanli.scoring import fleet as fleet_mod
from suanli.sim import metrics, replay, traces
from suanli.sim import options as options_mod


def load(
    centers: Sequence[str], trace: Sequence[str], trace_format: str, option_pairs: Sequence[str]
) -> tuple[fleet_mod.Fleet, traces.Trace]:
    """The fleet and the trace's jobs; ValueError (or InvalidManifests) naming what is wrong."""
    loaded = manifest_files.load(centers)
    if not loaded.centers:
        raise ValueError(f"--centers {', '.join(centers)}: no ComputeCenter found; see crds/examples/simulate")
    opts = options_mod.parse(trace_format, option_pairs)
    config = settings_mod.Settings()
    if isinstance(opts, options_mod.AlibabaOptions):
        if len(trace) != 1:
            raise ValueError("--trace: an alibaba-gpu-2023 trace is one CSV file (or the folder holding it)")
        fleet = fleet_mod.build(loaded.centers)
        return fleet, traces.load_alibaba(trace[0], fleet, opts)
    jobs = manifest_files.load(trace).jobs
    extra = [j.spec.data.region for j in jobs if j.spec.data.region]
    fleet = fleet_mod.build(loaded.centers, extra_regions=extra)
    return fleet, traces.load_computejobs(trace, fleet, opts, config)


def simulate(
    fleet: fleet_mod.Fleet,
    trace: traces.Trace,
    policies: Sequence[str],
    seed: int = 0,
    progress: Any = None,
) -> tuple[dict[str, Any], list[replay.Run]]:
    """The `-o json` document and the runs behind it."""
    runs = []
    for policy in policies:
        callback = progress(policy, len(trace.jobs)) if progress is not None else None
        runs.append(replay.replay(fleet, trace.jobs, policy, seed=seed, progress=callback))
    doc = {"policies": {run.policy: metrics.summary(run) for run in runs}, "skipped": dict(trace.skipped)}
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
        ("COST", "cost"),
        ("WAIT mean s", "meanWaitSeconds"),
        ("WAIT p95 s", "p95WaitSeconds"),
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
            value = row[key]
            cells.append(f"{value:,}" if isinstance(value, int) else f"{value:,.2f}")
        table.add_row(*cells)
    console = Console(file=out, width=200 if not out.isatty() else None)
    console.print(table)
    if doc.get("skipped"):
        skipped = ", ".join(f"{k} {v}" for k, v in doc["skipped"].items())
        console.print(f"trace rows left out: {skipped} (see suanli/sim/traces.py)")


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
        fleet, loaded = load(centers, trace, trace_format, option_pairs)
    except manifests.InvalidManifests as exc:
        manifest_files.print_errors("simulate", exc, "nothing was simulated", err)
        return 2
    except ValueError as exc:
        print(f"suanli simulate: {exc}", file=err)
        return 2
    policies = list(dict.fromkeys(policies))
    if err.isatty():
        with _Progress(err) as bar:
            doc, runs = simulate(fleet, loaded, policies, seed, bar)
    else:
        doc, runs = simulate(fleet, loaded, policies, seed)
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
