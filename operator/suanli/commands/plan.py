"""`suanli plan`: what the operator would decide for these jobs on an empty fleet, now."""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from suanli import manifest_files
from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.placement import planner, report, validation
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod


def _arrival(job: objects.ComputeJob, default: float) -> float:
    stamp = job.metadata.creation_timestamp
    if stamp:
        try:
            return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


def plan_manifests(
    loaded: manifests.Manifests, now: float, config: settings_mod.Settings | None = None
) -> dict[str, Any]:
    """The `-o json` document for a set of centers and jobs at `now` (pure apart from the clock passed in)."""
    config = config or settings_mod.Settings()
    extra_regions = [j.spec.data.region for j in loaded.jobs if j.spec.data.region]
    extra_regions += [r for j in loaded.jobs for r in j.spec.data.allowed_regions]
    fleet = fleet_mod.build(loaded.centers, extra_regions=extra_regions)
    pool_models = {p.model for p in fleet.pools}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    demands = []
    for job in loaded.jobs:
        problem = validation.invalid_field(job, pool_models)
        if problem is not None:
            entries[job.key] = report.invalid(job.namespace, job.name, *problem)
            continue
        demands.append(demand_mod.from_job(job, config.scoring.default_runtime_seconds, _arrival(job, now)))
    capacity, energy = planner.ledgers_for(fleet)
    reply = planner.plan(
        planner.PlanRequest(
            fleet=fleet, capacity=capacity, energy=energy, jobs=demands, now=now, settings=config
        )
    )
    ordered = [report.decision(d) for d in reply.decisions]
    invalid = [entries[k] for k in sorted(entries)]
    return {"jobs": ordered + invalid}


def _table(doc: dict[str, Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="suanli plan", show_lines=False)
    for column in ("JOB", "PHASE", "WHERE", "SCORE", "RUNNER-UP", "kWh", "kgCO2e", "WHY"):
        table.add_column(column, overflow="fold")
    for entry in doc["jobs"]:
        binding = entry["binding"]
        where = f"{binding['center']}/{binding['pool']} ({binding['model']})" if binding else "-"
        runner = next(
            (
                f"{c['center']}/{c['pool']} {c['score']:.3f}"
                for c in entry["candidates"]
                if binding is None or (c["center"], c["pool"]) != (binding["center"], binding["pool"])
            ),
            "-",
        )
        est = entry["estimates"]
        if entry["phase"] in ("Queued", "Invalid"):
            why = entry["message"]
        elif entry["phase"] == "Deferred":
            why = f"starts {entry['plannedStart']}"
        else:
            b = binding["breakdown"]
            why = f"acc {b['accelerator']:.2f} loc {b['locality']:.2f} energy {b['energy']:.2f}"
        table.add_row(
            f"{entry['namespace']}/{entry['name']}",
            entry["phase"],
            where,
            f"{binding['score']:.3f}" if binding else "-",
            runner,
            f"{est['energyKWh']:,.1f}" if est else "-",
            f"{est['carbonKg']:,.1f}" if est else "-",
            why,
        )
    console = Console(file=out, width=200 if not out.isatty() else None)
    console.print(table)
    waiting = [e for e in doc["jobs"] if e["phase"] == "Queued"]
    for entry in waiting:
        console.print(f"\n[bold]{entry['namespace']}/{entry['name']}[/bold] waits; closest pools:")
        for r in entry["rejected"][:3]:
            console.print(f"  {r['center']}/{r['pool']}: {r['reason']}")


def parse_now(text: str | None) -> float:
    if text is None:
        return datetime.datetime.now(tz=datetime.UTC).timestamp()
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--now {text!r} is not an RFC 3339 time; write e.g. 2026-11-21T08:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"--now {text!r} has no time zone; add Z or an offset such as +08:00")
    return moment.timestamp()


def run(
    paths: Sequence[str], output: str, now_text: str | None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    try:
        now = parse_now(now_text)
        loaded = manifest_files.load(paths)
    except manifests.InvalidManifests as exc:
        manifest_files.print_errors("plan", exc, "nothing was planned", err)
        return 2
    except ValueError as exc:
        print(f"suanli plan: {exc}", file=err)
        return 2
    if not loaded.centers:
        print(
            "suanli plan: no ComputeCenter in the given files; add at least one center (see crds/examples)",
            file=err,
        )
        return 2
    doc = plan_manifests(loaded, now)
    if output == "json":
        json.dump(doc, out, indent=2)
        out.write("\n")
    else:
        _table(doc, out)
    return 0
