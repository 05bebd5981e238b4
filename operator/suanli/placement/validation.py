"""Checks beyond the schema that need the fleet to judge (a job is Invalid, not merely waiting)."""

from __future__ import annotations

from collections.abc import Iterable

from suanli.api import objects
from suanli.catalog import accelerators


def invalid_field(job: objects.ComputeJob, fleet_models: Iterable[str]) -> tuple[str, str] | None:
    """(field path, message) of the first problem, or None. A typo must not look like a full fleet."""
    return invalid_models(job.spec.accelerators.models, fleet_models)


def invalid_models(models: Iterable[str], fleet_models: Iterable[str]) -> tuple[str, str] | None:
    """`invalid_field` for a job's `spec.accelerators.models` allow-list alone."""
    known = set(accelerators.CATALOG) | set(fleet_models)
    for i, model in enumerate(models):
        if model not in known:
            return (
                f"spec.accelerators.models[{i}]",
                f"{model!r} is neither a catalog model nor a model of any center's pool; "
                f"known models: {', '.join(sorted(known))}",
            )
    return None
