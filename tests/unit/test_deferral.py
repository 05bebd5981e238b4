"""Deferral to cleaner power: only with a deadline, never past it, never on a flat grid."""

from __future__ import annotations

import datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit import builders as b

# NOW is 19:06 in Asia/Shanghai. A solar window 10:00-16:00 local at 80 g/kWh, 700 g otherwise.
SOLAR = [{"start": "10:00", "end": "16:00", "gramsPerKWh": 80}]


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_flexible_job_waits_for_the_clean_window_and_still_meets_its_deadline() -> None:
    center = b.center(grams=700, carbon_windows=SOLAR)
    job = b.job(duration="4h", deadline=_iso(b.NOW + 2 * 86400), profile="green")
    decision = b.run_plan([center], [job]).decisions[0]
    assert decision.phase == "Deferred", decision.message
    assert decision.planned_start is not None and decision.binding is not None
    local = datetime.datetime.fromtimestamp(
        decision.planned_start, tz=datetime.timezone(datetime.timedelta(hours=8))
    )
    assert 10 <= local.hour < 16
    finish = (
        decision.planned_start
        + decision.binding.estimates.transfer_seconds
        + decision.binding.estimates.runtime_seconds
    )
    assert finish <= b.NOW + 2 * 86400
    assert "less carbon" in decision.message


def test_tight_deadline_binds_now() -> None:
    center = b.center(grams=700, carbon_windows=SOLAR)
    job = b.job(duration="4h", deadline=_iso(b.NOW + 5 * 3600), profile="green")
    assert b.run_plan([center], [job]).decisions[0].phase == "Bound"


def test_no_deadline_never_defers() -> None:
    center = b.center(grams=700, carbon_windows=SOLAR)
    assert b.run_plan([center], [b.job(duration="4h", profile="green")]).decisions[0].phase == "Bound"


def test_carbon_cap_met_only_in_the_clean_window_defers_instead_of_waiting_forever() -> None:
    center = b.center(grams=700, carbon_windows=SOLAR, pue=1.0)
    # 1 A100 x 400 W x 1 h = 0.4 kWh: 0.28 kg at 700 g, 0.032 kg at 80 g.
    job = b.job(duration="1h", deadline=_iso(b.NOW + 86400), energy={"maxCarbonKg": 0.1})
    decision = b.run_plan([center], [job]).decisions[0]
    assert decision.phase == "Deferred", decision.message
    assert decision.binding is not None and decision.binding.estimates.carbon_kg <= 0.1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    grams=st.floats(50, 900),
    windows=st.lists(st.tuples(st.integers(0, 23), st.integers(1, 12), st.floats(10, 900)), max_size=3),
    hours=st.sampled_from(["30m", "2h", "6h", "20h"]),
    slack_h=st.floats(0, 72),
    profile=st.sampled_from(["balanced", "green", "fast", "local"]),
)
def test_a_deferred_job_always_finishes_before_its_deadline(
    grams: float, windows: list[tuple[int, int, float]], hours: str, slack_h: float, profile: str
) -> None:
    sched: list[dict[str, Any]] = [
        {"start": f"{h:02d}:00", "end": f"{(h + span) % 24:02d}:00", "gramsPerKWh": g}
        for h, span, g in windows
    ]
    centers = [
        b.center("dirty", grams=grams, carbon_windows=sched),
        b.center("clean", region="cn-b", grams=grams * 0.9),
    ]
    deadline = b.NOW + slack_h * 3600
    decision = b.run_plan(
        centers, [b.job(duration=hours, deadline=_iso(deadline), profile=profile)]
    ).decisions[0]
    if decision.phase in ("Deferred", "Bound"):
        assert decision.binding is not None
        start = decision.planned_start if decision.phase == "Deferred" else b.NOW
        assert start is not None
        est = decision.binding.estimates
        assert start + est.transfer_seconds + est.runtime_seconds <= int(deadline) + 1
    if not sched:
        assert decision.phase != "Deferred", "a flat carbon schedule has nothing to wait for"


def test_replanning_a_little_later_keeps_the_planned_start() -> None:
    # A 9h job cannot fit inside the 6h solar window: many starts cover it fully; the choice must
    # not drift with the instant of planning.
    center = b.center(grams=700, carbon_windows=SOLAR)
    job = b.job(duration="9h", deadline=_iso(b.NOW + 2 * 86400), profile="green")
    starts = {b.run_plan([center], [job], now=b.NOW + dt).decisions[0].planned_start for dt in (0, 7, 61, 200)}
    assert len(starts) == 1 and None not in starts
