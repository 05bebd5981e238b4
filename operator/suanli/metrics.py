"""Every Prometheus metric of the operator, in this one module; `python -m suanli.metrics --markdown`
prints the documentation table generated from it.
"""

from __future__ import annotations

import argparse
import sys

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

JOBS = Gauge("suanli_jobs", "ComputeJobs known to the operator, by phase.", ["phase"], registry=REGISTRY)
BIND_LATENCY = Histogram(
    "suanli_job_bind_latency_seconds",
    "Seconds from a ComputeJob's creation to its binding (the status write).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
    registry=REGISTRY,
)
CYCLE = Histogram(
    "suanli_scheduling_cycle_seconds",
    "Seconds one scheduling cycle takes (snapshot and plan; writes happen in the background).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
POOL_ACCELERATORS = Gauge(
    "suanli_pool_accelerators",
    "Accelerators of a pool from Ready nodes and pod requests, by state (capacity, allocated by pods, reserved "
    "for bound replicas not running on a node, free).",
    ["center", "pool", "state"],
    registry=REGISTRY,
)
QUEUE_LENGTH = Gauge("suanli_queue_length", "ComputeJobs waiting for a placement (Pending, Queued, Deferred).", registry=REGISTRY)
QUEUE_SET_ASIDE = Gauge(
    "suanli_queue_set_aside",
    "Waiting ComputeJobs kept out of the scheduling cycle: Queued, and no pool they could use has room for "
    "their gang now (planned again once capacity they could use frees up).",
    registry=REGISTRY,
)
JOB_QUEUED_SECONDS = Gauge(
    "suanli_job_queued_seconds",
    "Age in seconds (since creation) of the oldest ComputeJob waiting in phase Queued; 0 when none waits.",
    registry=REGISTRY,
)
API_WRITE_ERRORS = Counter(
    "suanli_api_write_errors_total",
    "Writes to the API server that failed, by verb and resource.",
    ["verb", "resource"],
    registry=REGISTRY,
)
CENTER_ENERGY = Gauge(
    "suanli_center_energy_kwh",
    "Energy of a center's current budget period in kWh, by kind (used, reserved, remaining).",
    ["center", "kind"],
    registry=REGISTRY,
)
CENTER_INFO = Gauge(
    "suanli_center_info",
    "1 per ComputeCenter the operator holds, labelled with where it is: region, latitude and longitude in degrees "
    "(spec.location; empty when not set) and display name. Join on `center` for maps and tables.",
    ["center", "region", "display_name", "latitude", "longitude"],
    registry=REGISTRY,
)
CENTER_CARBON = Gauge(
    "suanli_center_carbon_grams_per_kwh",
    "A center's grid carbon intensity now, gCO2e per kWh: spec.energy.carbonIntensity's constant, or the daily "
    "window in force in the center's time zone.",
    ["center"],
    registry=REGISTRY,
)
QUEUE_USAGE = Gauge(
    "suanli_queue_usage",
    "A ComputeQueue's usage per quota dimension (accelerators/TYPE[/MODEL], computeUnits; energyKWh and carbonKg: "
    "used and reserved this period).",
    ["queue", "dimension"],
    registry=REGISTRY,
)
QUEUE_QUOTA = Gauge(
    "suanli_queue_quota", "A ComputeQueue's nominal quota per dimension (budgets: per period).", ["queue", "dimension"],
    registry=REGISTRY,
)
QUEUE_JOBS = Gauge(
    "suanli_queue_jobs", "ComputeJobs of a ComputeQueue, by state (admitted: bound or running; waiting).",
    ["queue", "state"], registry=REGISTRY,
)
BINDS = Counter("suanli_binds_total", "ComputeJobs bound (status written).", registry=REGISTRY)
REQUEUES = Counter(
    "suanli_job_attempts_ended_total",
    "Bound attempts that ended without finishing (pods not ready in time, a replica lost to a disruption, the "
    "Job deleted, preempted, suspended), by outcome: Requeued, Preempted, MemberLost, Suspended, or Failed at "
    "operator.requeue_limit.",
    ["outcome"],
    registry=REGISTRY,
)
TASK_ERRORS = Counter(
    "suanli_task_errors_total",
    "Background operator tasks that ended with an unexpected exception (each is logged with its traceback).",
    registry=REGISTRY,
)
EVENTS_DROPPED = Counter(
    "suanli_events_dropped_total",
    "Events not written because their object spent its budget of new Events (25, then one per 300 s; "
    "repeats of an Event only raise its count and are never dropped).",
    registry=REGISTRY,
)

ALL = (
    JOBS,
    BIND_LATENCY,
    CYCLE,
    POOL_ACCELERATORS,
    QUEUE_LENGTH,
    QUEUE_SET_ASIDE,
    JOB_QUEUED_SECONDS,
    API_WRITE_ERRORS,
    CENTER_ENERGY,
    CENTER_INFO,
    CENTER_CARBON,
    QUEUE_USAGE,
    QUEUE_QUOTA,
    QUEUE_JOBS,
    BINDS,
    REQUEUES,
    TASK_ERRORS,
    EVENTS_DROPPED,
)


def serve(port: int, address: str = "127.0.0.1") -> None:
    """Serve /metrics on address:port in a background thread."""
    start_http_server(port, addr=address, registry=REGISTRY)


def markdown() -> str:
    rows = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for metric in ALL:
        kind = type(metric).__name__.lower()
        name = metric._name + ("_total" if kind == "counter" else "")
        labels = ", ".join(f"`{label}`" for label in metric._labelnames) or "-"
        rows.append(f"| `{name}` | {kind} | {labels} | {metric._documentation} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suanli.metrics", description="The operator's metrics.")
    parser.add_argument("--markdown", action="store_true", help="print the documentation table")
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
