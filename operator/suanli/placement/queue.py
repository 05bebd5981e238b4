"""Queue order: higher priority first, then first come, then by name (deterministic)."""

from __future__ import annotations

from collections.abc import Iterable

from suanli.scoring import demand as demand_mod


def order_key(job: demand_mod.JobDemand) -> tuple[int, float, str, str]:
    return (-job.priority, job.arrival_epoch, job.namespace, job.name)


def ordered(jobs: Iterable[demand_mod.JobDemand]) -> list[demand_mod.JobDemand]:
    return sorted(jobs, key=order_key)
