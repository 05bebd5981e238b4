"""Leader election with a coordination.k8s.io/v1 Lease: one active operator, the others standby.

The protocol is client-go's (`k8s.io/client-go/tools/leaderelection`), in three parts:

* `try_acquire_or_renew` — GET the Lease; if another holder renewed it less than
  `duration_seconds` ago *as observed on our own monotonic clock* (no trust in clock skew
  between replicas), fail. Otherwise write ourselves in with a PUT carrying the
  resourceVersion we read: optimistic concurrency, so of two standbys racing for an expired
  Lease exactly one wins (the other gets 409 Conflict).
* `acquire` — a standby retries every `retry_seconds` until it holds the Lease, logging who
  holds it every `log_every_seconds`.
* `hold` — the leader renews every `renew_seconds`; if it cannot renew for
  `renew_deadline_seconds` (< `duration_seconds`), or finds someone else holding the Lease,
  `hold` returns: the caller must stop acting at once (the operator exits non-zero and
  Kubernetes restarts it as a standby). Another replica can only take over after
  `duration_seconds` without a renew, which is later than the leader's deadline.

`release` clears the holder on a clean shutdown so a standby takes over at its next retry.
The API and the clock are injected: unit tests drive it with a fake store and a manual clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from suanli import clock as clock_mod

LOG = logging.getLogger("suanli.leader")
REQUEST_TIMEOUT_S = 5.0  # per API call: a hung connection must not outlive the renew deadline


@dataclasses.dataclass(frozen=True)
class LeaseTimings:
    """How long a Lease lasts and how often it is renewed, in seconds."""

    duration_seconds: float = 15.0
    """A holder that has not renewed for this long may be replaced (Lease spec.leaseDurationSeconds)."""
    renew_seconds: float = 5.0
    """The leader renews this often."""
    renew_deadline_seconds: float = 10.0
    """The leader gives up (exits) when it could not renew for this long; must be < duration."""
    retry_seconds: float = 2.0
    """A standby retries, and a leader retries a failed renew, this often."""
    log_every_seconds: float = 30.0
    """A waiting standby logs who holds the Lease this often."""

    def __post_init__(self) -> None:
        if not 0 < self.renew_seconds < self.renew_deadline_seconds < self.duration_seconds:
            raise ValueError("need 0 < renew_seconds < renew_deadline_seconds < duration_seconds")


class Conflict(Exception):
    """The Lease changed since it was read (HTTP 409), or was created meanwhile."""


class LeaseApi(Protocol):
    """The three calls election needs, on plain dictionaries (a coordination.k8s.io/v1 Lease)."""

    def get(self) -> dict[str, Any] | None:
        """The Lease, or None if it does not exist."""
        ...

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create it; raise Conflict if it exists."""
        ...

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT it with body's metadata.resourceVersion; raise Conflict if that is stale."""
        ...


def micro_time(epoch: float) -> str:
    """A Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """Acquire, renew and release one Lease for `identity`."""

    def __init__(
        self,
        api: LeaseApi,
        name: str,
        namespace: str,
        identity: str,
        clock: clock_mod.Clock,
        timings: LeaseTimings | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ):
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.clock, self.timings, self.sleep = clock, timings or LeaseTimings(), sleep
        self.observed: dict[str, Any] | None = None  # the Lease as last read or written
        self.observed_at = -math.inf  # monotonic time the observed record last changed
        self.last_renew = -math.inf  # monotonic time of our last successful write
        self.is_leader = False

    @property
    def where(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def holder(self) -> str:
        spec = (self.observed or {}).get("spec") or {}
        return str(spec.get("holderIdentity") or "")

    def _observe(self, lease: dict[str, Any]) -> None:
        version = (lease.get("metadata") or {}).get("resourceVersion")
        old = ((self.observed or {}).get("metadata") or {}).get("resourceVersion")
        if self.observed is None or version != old:
            self.observed_at = self.clock.monotonic()
        self.observed = lease

    def _spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = micro_time(self.clock.now())
        prev = (previous or {}).get("spec") or {}
        ours = prev.get("holderIdentity") == self.identity
        transitions = int(prev.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self.timings.duration_seconds),
            "acquireTime": prev.get("acquireTime") if ours and prev.get("acquireTime") else now,
            "renewTime": now,
            "leaseTransitions": transitions if ours or previous is None else transitions + 1,
        }

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking I/O: call it in a thread). True if we hold the Lease now."""
        lease = self.api.get()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(None),
            }
            try:
                created = self.api.create(body)
            except Conflict:
                return False
            return self._won(created)
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.timings.duration_seconds)
        if holder and holder != self.identity and self.clock.monotonic() < self.observed_at + duration:
            return False  # someone else holds it and renewed recently (by our clock)
        body = {**lease, "spec": {**spec, **self._spec(lease)}}
        try:
            written = self.api.replace(body)
        except Conflict:
            return False
        return self._won(written)

    def _won(self, lease: dict[str, Any]) -> bool:
        self._observe(lease)
        self.last_renew = self.clock.monotonic()
        if not self.is_leader:
            LOG.info("%s: %s is the leader now", self.where, self.identity)
        self.is_leader = True
        return True

    async def _attempt(self, timeout: float = REQUEST_TIMEOUT_S * 2) -> bool:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self.try_acquire_or_renew), max(0.5, timeout))
        except Exception as exc:  # network, 5xx, 403: not ours this time; retried
            LOG.warning("%s: could not read or write it: %s", self.where, _short(exc))
            return False

    async def acquire(self) -> None:
        """Block until we hold the Lease (standby), logging who holds it now and then."""
        next_log = self.clock.monotonic()
        while not await self._attempt():
            if self.clock.monotonic() >= next_log:
                holder = self.holder() or "nobody"
                LOG.info("standby: %s is held by %s; waiting to take over (%s)", self.where, holder, self.identity)
                next_log = self.clock.monotonic() + self.timings.log_every_seconds
            await self.sleep(self.timings.retry_seconds)

    async def hold(self) -> str:
        """Renew until we lose the Lease; returns why (the caller must stop acting at once)."""
        t = self.timings
        while True:
            await self.sleep(t.renew_seconds)
            while True:
                left = t.renew_deadline_seconds - (self.clock.monotonic() - self.last_renew)
                if await self._attempt(min(REQUEST_TIMEOUT_S * 2, left)):
                    break
                if self.holder() and self.holder() != self.identity:
                    self.is_leader = False
                    return f"{self.where} is now held by {self.holder()}"
                waited = self.clock.monotonic() - self.last_renew
                if waited >= t.renew_deadline_seconds:
                    self.is_leader = False
                    return f"could not renew {self.where} for {waited:.1f}s (deadline {t.renew_deadline_seconds:g}s)"
                await self.sleep(min(t.retry_seconds, max(0.0, t.renew_deadline_seconds - waited)))

    def release(self) -> bool:
        """Give the Lease up (clean shutdown) so a standby takes over at once. Blocking I/O."""
        if not self.is_leader:
            return False
        self.is_leader = False
        try:
            lease = self.api.get()
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return False
            spec = {**(lease.get("spec") or {}), "holderIdentity": None, "leaseDurationSeconds": 1,
                    "renewTime": micro_time(self.clock.now())}
            self.api.replace({**lease, "spec": spec})
            LOG.info("%s: released", self.where)
            return True
        except Exception as exc:
            LOG.warning("%s: could not release it (a standby takes over when it expires): %s", self.where, _short(exc))
            return False


class KubeLeaseApi:
    """`LeaseApi` on the `kubernetes` client (CoordinationV1Api), every call with a timeout."""

    def __init__(self, api_client: Any, name: str, namespace: str):
        from kubernetes import client as k8s

        self.client = api_client
        self.coordination: Any = k8s.CoordinationV1Api(api_client)
        self.name, self.namespace = name, namespace

    def _plain(self, obj: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.client.sanitize_for_serialization(obj)
        return data

    def get(self) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._plain(
                self.coordination.read_namespaced_lease(self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S)
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._plain(
                self.coordination.create_namespaced_lease(self.namespace, body, _request_timeout=REQUEST_TIMEOUT_S)
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            raise

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._plain(
                self.coordination.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=REQUEST_TIMEOUT_S
                )
            )
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            raise


class StandbyHealth:
    """/healthz (200, liveness) and /readyz (503) while standby, on the port kopf's liveness
    endpoint takes over once this replica leads: a waiting standby is alive, not ready."""

    def __init__(self, address: str, port: int, describe: Callable[[], str]):
        self.address, self.port, self.describe = address, port, describe
        self.runner: Any = None

    async def start(self) -> None:
        from aiohttp import web

        async def healthz(_: Any) -> Any:
            return web.json_response({"role": "standby", "lease": self.describe()})

        async def readyz(_: Any) -> Any:
            return web.json_response({"role": "standby", "lease": self.describe()}, status=503)

        app = web.Application()
        app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
        self.runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.address, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


def _short(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status is not None:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    return f"{exc.__class__.__name__}: {str(exc)[:300]}"
