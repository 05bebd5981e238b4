"""Operator energy accounting and the test clock, pure: budgets rebuilt from ComputeJob statuses,
settlement (estimate or measured) in the status patch, and the offset-file clock."""

from __future__ import annotations

import pytest
from tests.unit.test_cache import CENTER, cjob, node

from suanli import clock as clock_mod
from suanli.kube import cache as cache_mod
from suanli.kube import objects as kobj
from suanli.kube import status as status_mod
from suanli.kube import workloads
from suanli.ledger import energy as energy_mod

NOW = 1_790_000_000.0  # 2026-09-21T22:13:20Z = 06:13 on the 22nd in Asia/Shanghai
DAY_START = energy_mod.period_bounds(NOW, "Asia/Shanghai", "Day")[0]
BINDING = {
    "center": "c1", "pool": "a100", "acceleratorType": "GPU", "model": "A100", "score": 0.5,
    "breakdown": {"accelerator": 0.5, "locality": 1, "energy": 0.5},
}
ESTIMATES = {"runtimeSeconds": 3600, "transferSeconds": 0, "energyKWh": 5.0, "carbonKg": 2.0, "cost": 1.0}


def _cache() -> cache_mod.Cache:
    c = cache_mod.Cache()
    c.upsert_center(CENTER)
    c.upsert_node(node("n1"))
    c.upsert_node(node("n2"))
    return c


def _done(name: str, kwh: float, completed: float, source: str = "estimate") -> dict:
    return cjob(name, status={
        "phase": "Succeeded", "binding": BINDING, "estimates": ESTIMATES,
        "completionTime": status_mod.rfc3339(completed),
        "energy": {"kWh": kwh, "carbonKg": kwh * 0.4, "source": source},
    })


def _workload(name: str, start: float, end: float | None, ns: str = "team-a") -> dict:
    status: dict = {"startTime": status_mod.rfc3339(start)}
    if end is not None:
        status |= {"completionTime": status_mod.rfc3339(end), "succeeded": 1,
                   "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": status_mod.rfc3339(end)}]}
    else:
        status["active"] = 1
    return {"metadata": {"name": workloads.job_name(name), "namespace": ns,
                         "labels": {workloads.LABEL_JOB: name}}, "status": status}


def test_settled_energy_of_this_period_is_used_and_of_the_last_period_is_not():
    c = _cache()
    c.upsert_job(_done("today", 7.5, DAY_START + 60), NOW)
    c.upsert_job(_done("yesterday", 1000.0, DAY_START - 60), NOW)
    c.upsert_job(cjob("running", status={"phase": "Running", "binding": BINDING, "estimates": ESTIMATES}), NOW)
    account = c.snapshot(NOW).energy.account("c1")
    assert (account.used_kwh, account.reserved_kwh) == (7.5, 5.0)
    assert account.remaining_kwh == 100000 - 12.5
    assert account.period_start == DAY_START
    # The next day (center time zone): used starts from zero, the running job still holds its estimate.
    tomorrow = c.snapshot(DAY_START + 86_400 + 1).energy.account("c1")
    assert (tomorrow.used_kwh, tomorrow.reserved_kwh) == (0.0, 5.0)


def test_a_finished_workload_keeps_its_reservation_until_the_settlement_is_written():
    c = _cache()
    c.upsert_job(cjob("done", status={"phase": "Running", "binding": BINDING, "estimates": ESTIMATES}), NOW)
    c.upsert_workload(_workload("done", NOW - 100, NOW - 10))
    assert c.finished(c.jobs[("team-a", "done")])
    account = c.snapshot(NOW).energy.account("c1")
    assert (account.used_kwh, account.reserved_kwh) == (0.0, 5.0)
    c.upsert_job(_done("done", 0.25, NOW - 10) | {"metadata": cjob("done")["metadata"] | {"resourceVersion": "2"}}, NOW)
    account = c.snapshot(NOW).energy.account("c1")
    assert (account.used_kwh, account.reserved_kwh) == (0.25, 0.0)


def test_progress_settles_the_estimate_or_a_given_measurement():
    c = _cache()
    record = c.upsert_job(cjob("j", status={"phase": "Running", "binding": BINDING, "estimates": ESTIMATES}), NOW)
    binding = c.binding(record)
    assert binding is not None
    wl = kobj.workload_info(_workload("j", NOW - 100, NOW))
    patch, reason, message, _ = status_mod.progress(record, binding, wl, [], 400.0, 1.2, NOW)
    # 100 s x 8 GPUs x 400 W x PUE 1.2
    assert reason == "Succeeded"
    assert patch["energy"] == {"kWh": pytest.approx(100 * 8 * 400 * 1.2 / 3.6e6, abs=1e-6),
                               "carbonKg": pytest.approx(100 * 8 * 400 * 1.2 / 3.6e6 * 0.4, abs=1e-6),
                               "source": "estimate"}
    assert patch["completionTime"] == status_mod.rfc3339(NOW)
    patch, _, message, _ = status_mod.progress(record, binding, wl, [], 400.0, 1.2, NOW, (0.05, "measured", None))
    assert patch["energy"] == {"kWh": 0.05, "carbonKg": pytest.approx(0.02), "source": "measured"}
    assert "measured 0.050 kWh" in message
    assert status_mod.finished_window(binding, wl, NOW + 5) == (NOW - 100, NOW)


def test_a_running_workload_is_not_settled():
    c = _cache()
    record = c.upsert_job(cjob("j", status={"phase": "Bound", "binding": BINDING, "estimates": ESTIMATES}), NOW)
    binding = c.binding(record)
    assert binding is not None
    wl = kobj.workload_info(_workload("j", NOW - 100, None))
    change = status_mod.progress(record, binding, wl, [], 400.0, 1.2, NOW)
    assert change is None or change[1] == "Running"


@pytest.mark.parametrize(("text", "want"), [("", 0.0), ("  \n", 0.0), ("86400", 86400.0), ("-1.5\n", -1.5)])
def test_offset_file_content(text, want):
    assert clock_mod.parse_offset(text) == want


@pytest.mark.parametrize("text", ["tomorrow", "nan", "inf"])
def test_offset_file_garbage_is_refused(text):
    with pytest.raises(ValueError):
        clock_mod.parse_offset(text)


def test_offset_file_clock_rereads_at_most_every_half_second(tmp_path):
    path = tmp_path / "offset"
    base = clock_mod.ManualClock(NOW)
    clock = clock_mod.OffsetFileClock(path, base)
    assert clock.now() == NOW  # no file: no offset
    path.write_text("3600")
    assert clock.now() == NOW  # not re-read yet
    base.advance(0.5)
    assert clock.now() == NOW + 0.5 + 3600
    path.write_text("garbage")
    base.advance(1)
    assert clock.now() == NOW + 1.5 + 3600  # keeps the last good offset
    assert clock.monotonic() == base.monotonic()


def test_offset_file_clock_watch_reports_changes(tmp_path, monkeypatch):
    import asyncio

    path = tmp_path / "offset"
    path.write_text("0")
    clock = clock_mod.OffsetFileClock(path)
    monkeypatch.setattr(clock_mod.OffsetFileClock, "REREAD_SECONDS", 0.01)

    async def scenario() -> None:
        seen = asyncio.Event()
        task = asyncio.get_running_loop().create_task(clock.watch(seen.set))
        try:
            path.write_text("120")
            await asyncio.wait_for(seen.wait(), timeout=5)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert clock.offset == 120


def test_the_environment_selects_the_offset_clock(tmp_path, monkeypatch):
    monkeypatch.delenv(clock_mod.OFFSET_FILE_ENV, raising=False)
    assert isinstance(clock_mod.from_environment(), clock_mod.SystemClock)
    monkeypatch.setenv(clock_mod.OFFSET_FILE_ENV, str(tmp_path / "offset"))
    (tmp_path / "offset").write_text("60")
    clock = clock_mod.from_environment()
    assert isinstance(clock, clock_mod.OffsetFileClock) and clock.offset == 60
