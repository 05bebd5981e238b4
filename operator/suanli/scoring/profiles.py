"""Policy profiles: the factor weights each profile uses (accelerator, locality, energy)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

WEIGHTS: Final[Mapping[str, tuple[float, float, float]]] = MappingProxyType(
    {
        # Even-handed: speed first, then data and energy equally.
        "balanced": (0.4, 0.3, 0.3),
        # Carbon and cost of the energy dominate; speed and data still break near-ties.
        "green": (0.2, 0.2, 0.6),
        # Time to result: the fastest accelerator for the job's precision.
        "fast": (0.7, 0.2, 0.1),
        # Keep the job next to its data.
        "local": (0.2, 0.7, 0.1),
    }
)


def weights_for(
    profile: str, override: tuple[float, float, float] | None = None
) -> tuple[float, float, float]:
    """Normalised (accelerator, locality, energy) weights; an override replaces the profile's."""
    raw = override if override is not None else WEIGHTS[profile]
    total = sum(raw)
    if total <= 0:
        raise ValueError("weights must not all be zero")
    return (raw[0] / total, raw[1] / total, raw[2] / total)
