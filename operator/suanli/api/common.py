"""Shared building blocks of the API models: the base model, durations, clock times."""

from __future__ import annotations

import re
import zoneinfo
from typing import Annotated, Any

import pydantic
from pydantic import AfterValidator, Field
from pydantic.alias_generators import to_camel

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# A Kubernetes extended resource name: an optional DNS subdomain prefix and a name.
RESOURCE_NAME_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"

_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("90m", "6h", "1h30m"). Raises ValueError otherwise."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a duration: write it Go-style with units h, m, s, ms (for example 90m, 6h, 1h30m)"
        )
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def parse_clock(text: str) -> int:
    """Minutes after midnight of an "HH:MM" wall-clock time."""
    if not re.fullmatch(CLOCK_PATTERN, text):
        raise ValueError(f"{text!r} is not a time of day: write HH:MM on a 24-hour clock (for example 07:30)")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _check_clock(text: str) -> str:
    parse_clock(text)
    return text


def _check_time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone; use a name like Asia/Shanghai or UTC") from None
    return name


# The pattern goes to the JSON schema only (json_schema_extra): the validator gives the friendlier error.
Duration = Annotated[str, AfterValidator(_check_duration), Field(json_schema_extra={"pattern": DURATION_PATTERN})]
ClockTime = Annotated[str, AfterValidator(_check_clock), Field(json_schema_extra={"pattern": CLOCK_PATTERN})]
TimeZone = Annotated[str, AfterValidator(_check_time_zone)]  # an IANA zone name


class Model(pydantic.BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=False,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dictionary as it appears in a manifest, without unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class ObjectMeta(pydantic.BaseModel):
    """The parts of Kubernetes object metadata Suanli reads; everything else is kept."""

    model_config = pydantic.ConfigDict(extra="allow", populate_by_name=True)

    name: str = Field(default="", description="Object name.")
    namespace: str | None = Field(default=None, description="Namespace (ComputeJob only).")
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    creation_timestamp: str | None = Field(default=None, alias="creationTimestamp")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class Condition(Model):
    """A standard Kubernetes condition."""

    type: str = Field(description="Condition type, e.g. Ready, Degraded, Invalid, Bound.")
    status: str = Field(description='"True", "False" or "Unknown".')
    reason: str = Field(default="", description="One CamelCase word a machine can match on.")
    message: str = Field(default="", description="What happened and what to do, for a person.")
    last_transition_time: str | None = Field(default=None, description="RFC 3339 time of the last status change.")
    observed_generation: int | None = Field(default=None, description="metadata.generation this reflects.")
