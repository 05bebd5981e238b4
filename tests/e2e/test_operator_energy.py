"""Issue 5 end to end: energy budgets, deferral to a clean window and measured energy, with the
operator as a subprocess on the local control plane.

Time is injected, not waited for: the operator runs with SUANLI_CLOCK_OFFSET_FILE (test-only, see
suanli/clock.py) and the tests rewrite the offset to jump past a budget-period boundary or to a
deferred job's planned start. Every wait has a deadline.
"""

from __future__ import annotations

import datetime
import math
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.helpers import (
    BOUND_OR_LATER,
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    compute_job,
    get_center,
    job_phases,
    job_status,
    small_center,
    wait_for_phase,
)
from tests.tools import fake_exporters
from tests.tools import prometheus as prometheus_tools
from tests.tools.prometheus_plugin import prometheus_binary, prometheus_factory  # noqa: F401  (fixtures)

from suanli import clock as clock_mod
from suanli.kube import objects as kobj
from suanli.ledger import energy as energy_mod

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

KIRITIMATI = "Pacific/Kiritimati"  # UTC+14: its midnight is not UTC's


class OffsetFile:
    """The offset file the operator reads; `advance_to(epoch)` makes the operator's now = epoch."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0.0
        path.write_text("0\n")

    def now(self) -> float:
        return time.time() + self.offset

    def advance_to(self, epoch: float) -> None:
        self.offset = epoch - time.time()
        self.path.write_text(f"{self.offset:.3f}\n")


@pytest.fixture
def test_clock(tmp_path: Path) -> OffsetFile:
    return OffsetFile(tmp_path / "clock-offset")


@pytest.fixture
def clocked_operator(kube: Any, tmp_path: Path, test_clock: OffsetFile):
    op = Operator(kube.kubeconfig, tmp_path, env={"SUANLI_CLOCK_OFFSET_FILE": str(test_clock.path)})
    op.start()
    yield op
    op.stop()


def _center(name: str) -> dict[str, Any]:
    """One A100 node; its own region, so that only this test's jobs (which allow only it) land here."""
    doc = small_center(name, nodes_expected=1)
    doc["spec"]["region"] = name
    return doc


def _job(
    name: str, ns: str, region: str, duration: str, delay: str = "3s", jitter: str = "5s", count: int = 8
) -> dict[str, Any]:
    doc = compute_job(name, ns, count=count, annotations={
        "pod-complete.stage.kwok.x-k8s.io/delay": delay, "pod-complete.stage.kwok.x-k8s.io/jitter-delay": jitter})
    doc["spec"]["runtime"] = {"estimatedDuration": duration}
    doc["spec"]["data"] = {"region": region, "allowedRegions": [region]}
    return doc


def _metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def _energy(custom_objects: Any, center: str) -> dict[str, Any]:
    return (get_center(custom_objects, center).get("status") or {}).get("energy") or {}


def test_budget_runs_out_then_the_next_period_in_the_centers_time_zone_frees_it(
    clocked_operator, test_clock, fake_nodes, centers, namespace, custom_objects, wait_for
):
    started = time.monotonic()
    name = f"e2e-bud-{uuid.uuid4().hex[:5]}"
    doc = _center(name)
    # A100 x 8 x 400 W x PUE 1.2 = 3.84 kW: 30 s estimated = 0.032 kWh, 45 s = 0.048 kWh.
    doc["spec"]["energy"] |= {"timeZone": KIRITIMATI, "budget": {"kWh": 0.05, "period": "Day"}}
    fake_nodes(doc, nodes_per_pool=1)
    centers([doc])

    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", _job("first", namespace, name, "30s"))
    wait_for_phase(custom_objects, namespace, "first", "Succeeded", timeout=EXPECT_TIMEOUT_S, what="the first job to succeed")
    first = job_status(custom_objects, namespace, "first")
    used = first["energy"]["kWh"]
    assert first["energy"]["source"] == "estimate"
    assert used > 0.002, first  # >= 2 s of 3.84 kW: the kwok pod ran at least its 3 s delay
    assert first["estimates"]["energyKWh"] == pytest.approx(0.032, abs=1e-3)

    def settled() -> dict[str, Any] | None:
        e = _energy(custom_objects, name)
        return e if e.get("usedKWh") == round(used, 3) and e.get("reservedKWh") == 0 else None

    energy = wait_for(settled, EXPECT_TIMEOUT_S, lambda: _energy(custom_objects, name), what="usedKWh to count the first job")
    assert energy["remainingKWh"] == pytest.approx(0.05 - used, abs=2e-3)
    period_start, period_end, _ = energy_mod.period_bounds(test_clock.now(), KIRITIMATI, "Day")
    assert kobj.parse_time(energy["periodStart"]) == period_start

    # 0.048 kWh no longer fits in what is left today: the job waits, naming the budget.
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", _job("second", namespace, name, "45s"))
    # (For a moment it may wait for accelerators instead: the first job's pod event can trail its Job's.)
    second = wait_for(
        lambda: (st := job_status(custom_objects, namespace, "second")).get("phase") == "Queued" and "budget" in st["message"] and st,
        EXPECT_TIMEOUT_S, lambda: job_status(custom_objects, namespace, "second"), what="the second job to wait for the budget")
    assert "budget" in second["message"], second["message"]
    assert any("center energy budget" in r["reason"] for r in second["rejected"]), second["rejected"]
    metrics = clocked_operator.metrics()
    assert _metric(metrics, "suanli_center_energy_kwh", center=name, kind="used") == pytest.approx(used, abs=1e-3)

    # A restart rebuilds the same ledger from the API alone, and the job still waits.
    clocked_operator.kill()
    clocked_operator.start()
    wait_for(lambda: _metric(clocked_operator.metrics(), "suanli_center_energy_kwh", center=name, kind="used") is not None,
             EXPECT_TIMEOUT_S, "the restarted operator to publish the center's energy")
    metrics = clocked_operator.metrics()
    assert _metric(metrics, "suanli_center_energy_kwh", center=name, kind="used") == pytest.approx(used, abs=1e-3)
    assert _metric(metrics, "suanli_center_energy_kwh", center=name, kind="reserved") == 0
    assert job_phases(custom_objects, namespace)["second"] == "Queued"

    # Midnight in Kiritimati (not UTC): the new day's budget takes the waiting job, with no event but time.
    test_clock.advance_to(period_end + 30)
    wait_for_phase(custom_objects, namespace, "second", *BOUND_OR_LATER, timeout=30, what="the second job to bind in the new period")
    wait_for_phase(custom_objects, namespace, "second", "Succeeded", timeout=EXPECT_TIMEOUT_S, what="the second job to succeed")
    second = job_status(custom_objects, namespace, "second")
    assert kobj.parse_time(second["boundTime"]) >= period_end

    def new_period() -> dict[str, Any] | None:
        e = _energy(custom_objects, name)
        return e if e.get("periodStart") and kobj.parse_time(e["periodStart"]) == period_end else None

    energy = wait_for(new_period, 30, lambda: _energy(custom_objects, name), what="the center status to show the new period")
    # The first job finished yesterday (center time): only what finished today counts as used.
    assert energy["usedKWh"] < round(used, 3) + 1e-9 or energy["usedKWh"] == round(second["energy"]["kWh"], 3)
    print(f"budget test in {time.monotonic() - started:.1f}s")


def test_a_deferred_job_binds_at_its_planned_start_on_the_injected_clock(
    clocked_operator, test_clock, fake_nodes, centers, namespace, custom_objects, wait_for
):
    started = time.monotonic()
    name = f"e2e-dfr-{uuid.uuid4().hex[:5]}"
    now = test_clock.now()
    window = math.ceil((now + 3 * 3600) / 60) * 60  # a clean window 3 h from now, whole minutes (UTC)
    hhmm = lambda t: datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%H:%M")  # noqa: E731
    doc = _center(name)
    doc["spec"]["energy"] = {
        "timeZone": "UTC", "pue": 1.2,
        "carbonIntensity": {"gramsPerKWh": 900, "schedule": [{"start": hhmm(window), "end": hhmm(window + 7200), "gramsPerKWh": 50}]},
    }
    fake_nodes(doc, nodes_per_pool=1)
    centers([doc])
    job = _job("green", namespace, name, "1h", delay="2s", jitter="3s")
    deadline = datetime.datetime.fromtimestamp(now + 10 * 3600, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    job["spec"]["schedule"] = {"deadline": deadline}
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)

    wait_for_phase(custom_objects, namespace, "green", "Deferred", timeout=EXPECT_TIMEOUT_S, what="the job to be deferred")
    status = job_status(custom_objects, namespace, "green")
    planned = kobj.parse_time(status["plannedStart"])
    # In the clean window (the core picks the start: the edge or a grid point in it), 1 h run inside it.
    assert window <= planned <= window + 3600, (status["plannedStart"], window, status["message"])
    assert "deferred to" in status["message"], status["message"]

    # Deferred means asleep until the planned start: no replanning in a loop meanwhile. The cycle
    # counter must stay flat while the operator's own clock proves that its time passes: it re-reads
    # the offset file every REREAD_SECONDS, and logs content it cannot use (once per content) without
    # waking the scheduler. Each tick is one such re-read, waited for in its log; they span >= 3 s.
    # (An unlabelled series: `_metric` reads labelled ones only, and would say None, i.e. always flat.)
    cycles = clocked_operator.metric("suanli_scheduling_cycle_seconds_count")
    assert cycles >= 1, "the operator deferred the job in a scheduling cycle, so it has counted one"
    ticks = math.ceil(3.0 / clock_mod.OffsetFileClock.REREAD_SECONDS) + 1
    for i in range(ticks):
        marker = f"tick-{i}-{uuid.uuid4().hex[:6]}"
        test_clock.path.write_text(marker + "\n")
        wait_for(lambda marker=marker: f"'{marker}'" in clocked_operator.log_text(), 10, clocked_operator.log_tail,
                 what=f"the operator to re-read its clock offset file (tick {i + 1} of {ticks})")
    test_clock.path.write_text(f"{test_clock.offset:.3f}\n")  # the offset it has kept all along: no jump
    woken = clocked_operator.metric("suanli_scheduling_cycle_seconds_count") - cycles
    # (a few wake-ups are not replanning in a loop: a node's or the center's status write may wake it)
    assert woken <= 5, f"{woken:g} scheduling cycles while a deferred job waited {ticks} clock re-reads"
    assert job_phases(custom_objects, namespace)["green"] == "Deferred"

    test_clock.advance_to(planned + 1)
    wait_for_phase(custom_objects, namespace, "green", *BOUND_OR_LATER, timeout=30, what="the job to bind at its planned start")
    wait_for_phase(custom_objects, namespace, "green", "Succeeded", timeout=EXPECT_TIMEOUT_S, what="the job to run and succeed")
    status = job_status(custom_objects, namespace, "green")
    assert kobj.parse_time(status["boundTime"]) >= planned
    assert status["binding"]["center"] == name
    # bound in the clean window: the estimate is at 50 g/kWh, not 900
    assert status["estimates"]["carbonKg"] == pytest.approx(status["estimates"]["energyKWh"] * 0.05, rel=0.05, abs=1e-3)
    print(f"deferral test in {time.monotonic() - started:.1f}s")


def test_measured_energy_settles_the_ledger(
    kube, tmp_path, prometheus_factory, fake_nodes, centers, namespace, custom_objects, core_v1, wait_for  # noqa: F811
):
    started = time.monotonic()
    watts, gpus, pue = 700.0, 8, 1.2
    exporter = fake_exporters.FakeExporter([]).start()
    try:
        prom = prometheus_factory([prometheus_tools.static_job("dcgm", [exporter.address])])
        prom.wait_for_targets_up(["dcgm"])
        config = tmp_path / "settings.yaml"
        config.write_text(yaml.safe_dump({"measured_energy": {
            "prometheus_url": prom.url, "min_window_seconds": 5, "query_timeout_seconds": 3}}))
        op = Operator(kube.kubeconfig, tmp_path, args=["--config", str(config)])
        op.start()
        try:
            name = f"e2e-mes-{uuid.uuid4().hex[:5]}"
            doc = _center(name)
            fake_nodes(doc, nodes_per_pool=1)
            centers([doc])
            custom_objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "computejobs", _job("metered", namespace, name, "1h", delay="25s", jitter="26s", count=gpus))

            def pods() -> list[Any] | None:
                items = core_v1.list_namespaced_pod(namespace, label_selector="suanli.io/job=metered").items
                return items if items and all(p.spec.node_name for p in items) else None

            found = wait_for(pods, EXPECT_TIMEOUT_S, "the job's pod to be scheduled", interval=0.1, max_interval=0.2)
            pod = found[0]
            exporter.devices.extend(
                fake_exporters.Gpu(namespace, pod.metadata.name, gpu=i, watts=watts, node=pod.spec.node_name)
                for i in range(gpus))
            wait_for_phase(custom_objects, namespace, "metered", "Succeeded", timeout=EXPECT_TIMEOUT_S,
                           what="the metered job to succeed")
            status = job_status(custom_objects, namespace, "metered")
            runtime = kobj.parse_time(status["completionTime"]) - kobj.parse_time(status["startTime"])
            expected = watts * gpus * runtime * pue / 3.6e6
            assert status["energy"]["source"] == "measured", op.log_tail()
            # The series appear ~1 s after the pod starts and times are whole seconds: 15 % tolerance.
            # (The estimate would be 400 W x 8 per A100 board: 4/7 of this, far outside.)
            assert status["energy"]["kWh"] == pytest.approx(expected, rel=0.15), (status["energy"], runtime)
            assert "measured" in status["message"]

            def counted() -> dict[str, Any] | None:
                e = _energy(custom_objects, name)
                return e if e.get("usedKWh") == round(status["energy"]["kWh"], 3) and e.get("reservedKWh") == 0 else None

            wait_for(counted, 30, lambda: _energy(custom_objects, name), what="the center's usedKWh to include it")
        finally:
            op.stop()
    finally:
        exporter.stop()
    print(f"measured-energy test in {time.monotonic() - started:.1f}s")
