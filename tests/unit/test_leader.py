"""Lease leader election (suanli.kube.leader) on an in-memory Lease store and a manual clock.

The store does what the API server does for a Lease: resourceVersion bumps on every write and a
PUT with a stale resourceVersion is refused (409), so the optimistic-concurrency paths are real.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest

from suanli import clock as clock_mod
from suanli.kube import leader

NAME, NS = "suanli-operator-leader", "suanli-system"


class FakeLeases:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False  # simulate an unreachable API server
        self.writes = 0

    def view(self, identity: str) -> FakeLeaseApi:
        return FakeLeaseApi(self, identity)


class FakeLeaseApi:
    def __init__(self, store: FakeLeases, identity: str):
        self.store, self.identity = store, identity
        self.before_replace: Any = None  # hook: another writer sneaks in between GET and PUT

    def _check(self) -> None:
        if self.store.fail:
            raise ConnectionError("API server unreachable")

    def get(self) -> dict[str, Any] | None:
        self._check()
        return copy.deepcopy(self.store.lease)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if self.store.lease is not None:
            raise leader.Conflict("exists")
        return self._write(body)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        if self.before_replace is not None:
            hook, self.before_replace = self.before_replace, None
            hook()
        assert self.store.lease is not None
        if body["metadata"].get("resourceVersion") != self.store.lease["metadata"]["resourceVersion"]:
            raise leader.Conflict("stale resourceVersion")
        return self._write(body)

    def _write(self, body: dict[str, Any]) -> dict[str, Any]:
        self.store.version += 1
        self.store.writes += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.store.version)
        self.store.lease = body
        return copy.deepcopy(body)


def elector(store: FakeLeases, identity: str, clock: clock_mod.ManualClock) -> leader.Elector:
    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    return leader.Elector(store.view(identity), NAME, NS, identity, clock, sleep=sleep)


def holder(store: FakeLeases) -> str | None:
    assert store.lease is not None
    return store.lease["spec"]["holderIdentity"]


async def until(check: Any, what: str, timeout: float = 5.0) -> None:
    """Yield to the event loop until `check()` holds; fail after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        await asyncio.sleep(0.001)


def test_the_first_replica_creates_the_lease_and_leads() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a = elector(store, "a", clock)
    assert a.try_acquire_or_renew() and a.is_leader
    spec = store.lease["spec"] if store.lease else {}
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z") and "." in spec["renewTime"]  # MicroTime


def test_a_standby_waits_while_the_leader_renews_and_takes_over_after_the_duration() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    for _ in range(10):  # a renews every 5 s: b never gets it
        clock.advance(5)
        assert a.try_acquire_or_renew()
        assert not b.try_acquire_or_renew()
    clock.advance(14.9)  # a stopped renewing (SIGKILL); b saw the last renew 14.9 s ago
    assert not b.try_acquire_or_renew()
    clock.advance(0.2)
    assert b.try_acquire_or_renew()
    assert holder(store) == "b" and store.lease and store.lease["spec"]["leaseTransitions"] == 1


def test_expiry_is_judged_on_the_standbys_own_clock_not_the_leaders_timestamps() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert store.lease is not None
    store.lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"  # a skewed leader clock
    assert not b.try_acquire_or_renew(), "a renewTime far in the past must not let b steal a fresh lease"


def test_two_standbys_racing_for_an_expired_lease_one_wins() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b, c = (elector(store, n, clock) for n in "abc")
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.advance(16)
    # c writes itself in between b's GET and b's PUT: b's PUT carries a stale resourceVersion.
    assert isinstance(b.api, FakeLeaseApi)
    b.api.before_replace = lambda: c.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert holder(store) == "c" and c.is_leader and not b.is_leader


def test_a_standby_blocks_in_acquire_and_logs_who_holds_the_lease(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    caplog.set_level("INFO", logger="suanli.leader")
    asyncio.run(b.acquire())  # a never renews again: b gets it after ~15 s of its own retries
    assert b.is_leader and holder(store) == "b"
    assert 15 <= clock.monotonic() <= 15 + b.timings.retry_seconds + 0.01
    assert any("held by a" in r.getMessage() for r in caplog.records)


def test_hold_renews_every_five_seconds_and_returns_when_the_api_is_gone_for_the_deadline() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a = elector(store, "a", clock)
    assert a.try_acquire_or_renew()

    started = clock.monotonic()

    async def scenario() -> tuple[str, float]:
        task = asyncio.create_task(a.hold())
        await until(lambda: clock.monotonic() >= started + 30, "hold() to renew for 30 s of the manual clock")
        store.fail = True
        failed_at = clock.monotonic()
        reason = await asyncio.wait_for(task, 5)
        lost_after = clock.monotonic() - a.last_renew
        assert lost_after <= a.timings.renew_deadline_seconds + 0.01, lost_after
        assert lost_after < a.timings.duration_seconds  # gives up before anyone may take over
        assert clock.monotonic() - failed_at <= a.timings.renew_deadline_seconds
        return reason, failed_at

    writes_before = store.writes
    reason, failed_at = asyncio.run(scenario())
    assert "could not renew" in reason and not a.is_leader
    # One renewal after each 5 s sleep until the API went away (the last one may have been on its
    # way when it did): every 5 s, neither fewer nor more.
    sleeps = round((failed_at - started) / a.timings.renew_seconds)
    assert sleeps >= 6 and sleeps - 1 <= store.writes - writes_before <= sleeps, (sleeps, store.writes - writes_before)


def test_hold_returns_at_once_when_another_replica_holds_the_lease() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert store.lease is not None
    store.lease["spec"]["holderIdentity"] = "b"  # e.g. a paused for longer than the lease
    store.version += 1
    store.lease["metadata"]["resourceVersion"] = str(store.version)
    writes_before = store.writes
    reason = asyncio.run(asyncio.wait_for(a.hold(), 5))
    assert "held by b" in reason and not a.is_leader
    # a stepped down without writing: the Lease is still b's (b never had to act to keep it).
    assert holder(store) == "b" and store.writes == writes_before and not b.is_leader


def test_release_lets_a_standby_take_over_at_its_next_retry() -> None:
    store, clock = FakeLeases(), clock_mod.ManualClock()
    a, b = elector(store, "a", clock), elector(store, "b", clock)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    assert a.release()
    assert holder(store) is None
    assert b.try_acquire_or_renew() and holder(store) == "b"
    assert not a.release()  # not the leader any more: nothing to do


def test_timings_must_give_up_before_the_lease_expires() -> None:
    with pytest.raises(ValueError):
        leader.LeaseTimings(duration_seconds=10, renew_deadline_seconds=12)
    defaults = leader.LeaseTimings()  # 15 s lease, renew every 5 s, give up after 10 s
    assert (defaults.duration_seconds, defaults.renew_seconds, defaults.renew_deadline_seconds) == (15, 5, 10)


def test_run_flags_default_from_the_charts_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from suanli import cli

    monkeypatch.setenv("SUANLI_LEADER_ELECTION", "lease")
    monkeypatch.setenv("SUANLI_LEASE_NAME", "my-lease")
    monkeypatch.setenv("SUANLI_NAMESPACE", "suanli-system")
    args = cli.build_parser().parse_args(["run"])
    assert (args.leader_election, args.lease_name, args.lease_namespace) == ("lease", "my-lease", "suanli-system")
    monkeypatch.delenv("SUANLI_LEADER_ELECTION")
    monkeypatch.delenv("SUANLI_NAMESPACE")
    args = cli.build_parser().parse_args(["run", "--lease-namespace", "x"])
    assert (args.leader_election, args.lease_namespace) == ("none", "x")


class _HeldElector:
    """What `_operate` needs of an elector that already holds the Lease."""

    released = False

    async def hold(self) -> str:
        await asyncio.Event().wait()
        return "never"

    def release(self) -> bool:
        self.released = True
        return True


@pytest.mark.parametrize(
    ("argv", "pod_name", "expected"),
    [
        (["--leader-election", "lease", "--identity", "replica-a"], "pod-0", "replica-a"),
        (["--leader-election", "lease"], "pod-0", "pod-0"),
        (["--leader-election", "none"], "pod-1", "pod-1"),
    ],
    ids=["lease-explicit", "lease-pod-name", "none-pod-name"],
)
def test_the_operator_serves_as_the_identity_that_holds_the_lease(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], pod_name: str, expected: str
) -> None:
    """One identity per replica: the Lease's holder is the name the serving half (and its Events'
    reporting instance) goes by, so a binding can be traced to the replica that held the Lease."""
    from suanli import cli, settings
    from suanli.commands import run

    monkeypatch.setenv("SUANLI_POD_NAME", pod_name)
    held = _HeldElector()
    seen: dict[str, Any] = {}

    async def lead(args: Any, clock: Any, identity: str) -> _HeldElector:
        seen["lead"] = identity
        return held

    async def serve(args: Any, config: Any, clock: Any, keeper: Any, identity: str) -> None:
        seen["serve"], seen["keeper"] = identity, keeper

    monkeypatch.setattr(run, "_lead", lead)
    monkeypatch.setattr(run, "_serve", serve)
    args = cli.build_parser().parse_args(["run", *argv])
    asyncio.run(run._operate(args, settings.Settings()))
    assert seen["serve"] == expected
    if args.leader_election == "lease":
        assert seen["lead"] == expected and seen["keeper"] is not None and held.released
    else:
        assert "lead" not in seen and seen["keeper"] is None


def test_the_api_client_writes_its_events_as_this_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    """`_serve` hands the identity to the Api, whose Events carry it as reportingInstance/source.host."""
    from suanli import cli, settings
    from suanli.commands import run
    from suanli.kube import client as client_mod

    class Made(Exception):
        """The Api was constructed: stop before anything touches the API server."""

    seen: dict[str, Any] = {}

    def api(*args: Any, **kwargs: Any) -> None:
        seen.update(kwargs)
        raise Made

    monkeypatch.setattr(client_mod, "api_client", lambda *args, **kwargs: object())
    monkeypatch.setattr(client_mod, "Api", api)
    args = cli.build_parser().parse_args(["run", "--namespace", "suanli-system"])
    with pytest.raises(Made):
        asyncio.run(run._serve(args, settings.Settings(), clock_mod.ManualClock(), None, "replica-b"))
    assert seen["instance"] == "replica-b" and seen["events_namespace"] == "suanli-system"
