"""Decisions as wire dictionaries: the shape of ComputeJob status and of `suanli plan -o json`."""

from __future__ import annotations

import datetime
from typing import Any

from suanli.placement import decision as decision_mod


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def candidate(c: decision_mod.Candidate) -> dict[str, Any]:
    return {
        "center": c.pool.center,
        "pool": c.pool.pool,
        "score": _round(c.score),
        "breakdown": breakdown(c.breakdown),
    }


def breakdown(b: decision_mod.Breakdown) -> dict[str, float]:
    return {"accelerator": _round(b.accelerator), "locality": _round(b.locality), "energy": _round(b.energy)}


def binding(c: decision_mod.Candidate) -> dict[str, Any]:
    return {
        "center": c.pool.center,
        "pool": c.pool.pool,
        "acceleratorType": c.pool.accelerator_type,
        "model": c.pool.model,
        "score": _round(c.score),
        "breakdown": breakdown(c.breakdown),
    }


def estimates(e: decision_mod.Estimates) -> dict[str, float]:
    return {
        "runtimeSeconds": _round(e.runtime_seconds, 1),
        "transferSeconds": _round(e.transfer_seconds, 1),
        "energyKWh": _round(e.energy_kwh, 3),
        "carbonKg": _round(e.carbon_kg, 3),
        "cost": _round(e.cost, 2),
    }


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def decision(d: decision_mod.Decision) -> dict[str, Any]:
    """The plan entry of one job (also the status fields the operator writes)."""
    return {
        "namespace": d.job.namespace,
        "name": d.job.name,
        "phase": d.phase,
        "queue": d.job.queue,
        "binding": binding(d.binding) if d.binding is not None else None,
        "estimates": estimates(d.binding.estimates) if d.binding is not None else None,
        "plannedStart": rfc3339(d.planned_start) if d.planned_start is not None else None,
        "candidates": [candidate(c) for c in d.candidates],
        "rejected": [{"center": r.pool.center, "pool": r.pool.pool, "reason": r.reason} for r in d.rejected],
        "message": d.message,
    }


def invalid(namespace: str, name: str, field: str, message: str) -> dict[str, Any]:
    """The plan entry of a job that is Invalid (a problem the schema cannot see)."""
    return {
        "namespace": namespace,
        "name": name,
        "phase": "Invalid",
        "binding": None,
        "estimates": None,
        "plannedStart": None,
        "candidates": [],
        "rejected": [],
        "message": f"{field}: {message}",
    }
