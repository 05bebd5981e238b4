"""`suanli plan`: what the operator would decide for these jobs on an empty fleet, now."""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from suanli import manifest_files
from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.placement import planner, report, tenancy, validation
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
    """The `-o json` document for a set of centers, jobs, queues (and the Namespaces whose labels select
    queues) at `now` (pure apart from the clock passed in)."""
    config = config or settings_mod.Settings()
    extra_regions = [j.spec.data.region for j in loaded.jobs if j.spec.data.region]
    extra_regions += [r for j in loaded.jobs for r in j.spec.data.allowed_regions]
    fleet = fleet_mod.build(loaded.centers, extra_regions=extra_regions)
    pool_models = {p.model for p in fleet.pools}
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    demands = []
    queues = {q.name: q.spec for q in loaded.queues}
    for job in loaded.jobs:
        problem = validation.invalid_field(job, pool_models)
        if problem is not None:
            entries[job.key] = report.invalid(job.namespace, job.name, *problem)
            continue
        demand = demand_mod.from_job(job, config.scoring.default_runtime_seconds, _arrival(job, now))
        admitted = tenancy.resolve(job.spec.queue, job.namespace, loaded.namespaces.get(job.namespace), queues)
        waits = admitted.problem or tenancy.required(admitted.queue, job.namespace, config.tenancy.require_queue)
        demands.append(dataclasses.replace(demand, queue=admitted.queue, queue_problem=waits))
    capacity, energy = planner.ledgers_for(fleet)
    reply = planner.plan(
        planner.PlanRequest(
            fleet=fleet, capacity=capacity, energy=energy, jobs=demands, now=now, settings=config,
            quotas=tenancy.ledger_for(queues) if queues else None,
        )
    )
    ordered = [report.decision(d) for d in reply.decisions]
    invalid = [entries[k] for k in sorted(entries)]
    doc: dict[str, Any] = {"jobs": ordered + invalid}
    if reply.quotas is not None:
        doc["queues"] = tenancy.usage_report(reply.quotas)
    return doc


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
    if doc.get("queues"):
        queues = Table(title="queues after the plan", show_lines=False)
        for column in ("QUEUE", "COHORT", "DIMENSION", "USED / QUOTA", "BORROWED", "LENT", "LEFT"):
            queues.add_column(column, overflow="fold")
        for q in doc["queues"]:
            for k, dim in enumerate(q["dimensions"]):
                queues.add_row(q["name"] if k == 0 else "", (q["cohort"] or "-") if k == 0 else "", dim["name"],
                               f"{dim['used']:.4g} / {dim['quota']:.4g}", f"{dim['borrowed']:.4g}", f"{dim['lent']:.4g}",
                               "-" if dim["left"] is None else f"{dim['left']:.4g}")
        console.print(queues)
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
