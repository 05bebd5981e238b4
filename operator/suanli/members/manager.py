"""The hub's connections to its member clusters, kept in step with the ComputeCenters.

For every ComputeCenter whose `spec.cluster.kubeconfigSecretRef` names a kubeconfig Secret, the
hub reads the Secret (only in its own namespace: its RBAC reads Secrets nowhere else), checks the
kubeconfig (`credentials.parse`: nothing run, nothing read from disk), connects, and follows the
member's Nodes, accelerator Pods and Suanli's batch Jobs with the same watches, handlers and cache
as its own cluster's (the cache names a member's objects qualified with the center's name). Every
`members.probe_seconds`, and whenever a center changes, each member is looked at again:

- the Secret changed (another kubeconfig): the old connection is closed and a new one made;
- the Secret is gone, unreadable, or its kubeconfig refused: the center is `Ready=False` with a
  reason that says which (`MemberSecretMissing`, `MemberSecretUnreadable`, `MemberCredentialsRefused`),
  and its pools take no new jobs;
- the member does not answer: `Ready=False`, `MemberUnreachable`; after `members.lost_after_seconds`
  without an answer it is lost (`MemberLost`): its bound and running jobs go back to the queue (each
  counts as an attempt) and may be placed elsewhere;
- a lost member answers again: first every Job there that is not a current attempt of a live
  ComputeJob (superseded while it was away, or whose ComputeJob was deleted meanwhile) is deleted,
  then it is `Ready` and takes jobs again. The same sweep runs when a member is connected (after an
  operator restart: Jobs of ComputeJobs deleted while no operator ran) and every
  `operator.resync_seconds` (a deletion the operator could not make at once). Across a partition that is at-least-once: the old attempt
  may still be running in the member until then; never two attempts once both sides are reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from suanli.handlers import mirror
from suanli.kube import errors, records, relist, watch, workloads
from suanli.kube import scheduler as scheduler_mod
from suanli.members import connection as connection_mod
from suanli.members import credentials as credentials_mod

LOG = logging.getLogger("suanli.members")
WATCHED = {"nodes": mirror.on_node, "pods": mirror.on_pod, "workloads": mirror.on_workload,
           "deviceclasses": mirror.on_device_class, "slices": mirror.on_slice, "claims": mirror.on_claim}


class _Member:
    """What the hub keeps for one member center."""

    def __init__(self) -> None:
        self.fingerprint = ""  # sha256 of the kubeconfig the connection was made from
        self.connection: connection_mod.Connection | None = None
        self.watchers: list[asyncio.Task[None]] = []
        self.last_answer: float | None = None  # monotonic: the last time the member answered
        self.since = 0.0  # monotonic: when the connection was made (the lost clock starts there at the latest)
        self.swept = False  # superseded Jobs deleted since it was connected (or last lost)
        self.listed: set[str] = set()  # kinds whose first LIST of this connection is in the cache
        self.last_sweep = 0.0  # monotonic
        self.last_relist = 0.0  # monotonic: the relist safety net's last look at it (or the connection)


class Members:
    def __init__(self, sched: scheduler_mod.Scheduler, namespace: str, memo: Any, instance: str = "",
                 monotonic: Callable[[], float] = time.monotonic, relist_seconds: float = 300.0):
        """`namespace`: the operator's own (the only one whose Secrets it reads); `memo`: what the mirror
        handlers are given (cache, scheduler, gates); `relist_seconds`: how often the relist safety net
        (kube/relist.py) compares what is cached of each member with a LIST of it (0: never)."""
        self.sched, self.cache, self.hub = sched, sched.cache, sched.api
        self.settings = sched.settings.members
        self.namespace, self.memo, self.instance = namespace, memo, instance
        self.monotonic, self.relist_seconds = monotonic, relist_seconds
        self.members: dict[str, _Member] = {}
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Look at every member now, then every `members.probe_seconds` or when woken."""
        try:
            while True:
                self.wake.clear()
                try:
                    await self.reconcile()
                except Exception:
                    LOG.exception("could not look at the member clusters; again in %gs", self.settings.probe_seconds)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=self.settings.probe_seconds)
        finally:
            for name in list(self.members):
                self._close(name)

    async def reconcile(self) -> None:
        wanted = {name: c.spec.cluster.kubeconfig_secret_ref for name, c in self.cache.centers.items()
                  if c.spec.cluster is not None}
        for name in sorted(set(self.members) - set(wanted)):
            LOG.info("center %s is no longer a member cluster (deleted, or spec.cluster removed); disconnecting", name)
            self._close(name)
            del self.members[name]
            self.sched.clusters.forget(name)
            self._set(name, None)
            self.cache.drop_cluster(name)
        for name, ref in sorted(wanted.items()):
            await self._look(name, ref)

    # --- one member ------------------------------------------------------------------------

    async def _look(self, name: str, ref: Any) -> None:
        member = self.members.setdefault(name, _Member())
        secret = f"{ref.namespace}/{ref.name}"
        if ref.namespace != self.namespace:
            self._refuse(name, member, "MemberSecretRefused",
                         f"spec.cluster.kubeconfigSecretRef names Secret {secret}, outside the operator's namespace "
                         f"{self.namespace}; the hub reads Secrets only there: create the Secret in {self.namespace}")
            return
        try:
            text = await self.hub.run(self.hub.read_secret_key, ref.namespace, ref.name, ref.key)
        except ApiException as exc:
            if exc.status == 404:
                self._refuse(name, member, "MemberSecretMissing",
                             f"Secret {secret} (spec.cluster.kubeconfigSecretRef) does not exist; create it, "
                             f"e.g. with `suanli join {name} --member-kubeconfig PATH`")
            else:
                self._refuse(name, member, "MemberSecretUnreadable",
                             f"cannot read Secret {secret}: {errors.short(exc)}; check the operator's RBAC "
                             f"(get secrets in {self.namespace})")
            return
        except Exception as exc:
            LOG.warning("member %s: cannot read Secret %s now (%s); keeping what was there", name, secret,
                        errors.short(exc))
            return
        if text is None:
            self._refuse(name, member, "MemberSecretMissing",
                         f"Secret {secret} has no key {ref.key} (spec.cluster.kubeconfigSecretRef.key)")
            return
        fingerprint = hashlib.sha256(text).hexdigest()
        if fingerprint != member.fingerprint or member.connection is None:
            if member.connection is not None:
                LOG.info("member %s: Secret %s changed; reconnecting", name, secret)
            self._close(name)
            member.fingerprint = fingerprint
            try:
                creds = credentials_mod.parse(text)
            except credentials_mod.Refused as exc:
                self._refuse(name, member, "MemberCredentialsRefused",
                             f"the kubeconfig in Secret {secret} key {ref.key} is refused: {exc}")
                return
            member.connection = connection_mod.Connection(
                name, creds, self.sched.settings.operator.write_workers, self.settings.request_timeout_seconds,
                self.instance)
            member.since = member.last_relist = self.monotonic()
            member.swept = False
            self._watch(name, member)
            LOG.info("member %s: connecting to %s", name, creds.server)
        await self._probe(name, member)

    def _watch(self, name: str, member: _Member) -> None:
        assert member.connection is not None
        api = member.connection.api
        member.listed = set()
        self.cache.member_state.synced.discard(name)

        def listed(kind: str) -> None:
            member.listed.add(kind)
            if member.listed >= set(WATCHED) and name not in self.cache.member_state.synced:
                # Its Jobs and pods are all in the cache now: the lifecycle may judge its jobs again.
                self.cache.member_state.synced.add(name)
                LOG.info("member %s: its nodes, pods and Jobs are in the cache", name)
                for key in self.cache.jobs_in_cluster(name):
                    self.sched.job_changed(key)
                self.sched.center_changed()
                self.sched.poke()

        for kind, handler in WATCHED.items():
            watcher = watch.Watcher(api, kind, self.cache, functools.partial(handler, cluster=name), self.memo,
                                    cluster=name, listed=listed)
            member.watchers.append(asyncio.create_task(watcher.run(), name=f"member-{name}-{kind}"))

    async def _probe(self, name: str, member: _Member) -> None:
        assert member.connection is not None
        api = member.connection.api
        try:
            await api.run(api.request, "GET", "/version", timeout=self.settings.request_timeout_seconds)
        except Exception as exc:
            self._unreachable(name, member, exc)
            return
        now = member.last_answer = self.monotonic()
        due = now - member.last_sweep >= self.sched.settings.operator.resync_seconds or name in self.sched.members_sweep_due
        if name in self.cache.member_state.lost or not member.swept or due:
            self.sched.members_sweep_due.discard(name)
            member.last_sweep = now
            try:
                deleted = await sweep(api, self.cache, name, self.settings.hub_name)
            except Exception as exc:
                LOG.warning("member %s: could not delete its superseded Jobs yet (%s); it takes no jobs until then",
                            name, errors.short(exc))
                self._set(name, ("MemberRecovering", f"deleting Jobs superseded while it was away: {errors.short(exc)}"),
                          lost=name in self.cache.member_state.lost)
                return
            member.swept = True
            if deleted:
                LOG.warning("member %s: deleted %d Job(s) of attempts superseded (or of ComputeJobs deleted) "
                            "while it could not be reached: %s", name, len(deleted), ", ".join(deleted[:10]))
        self.sched.clusters.connected(name, api)
        if self._set(name, None):
            LOG.info("member %s: connected (%s)", name, member.connection.server)
        self._relist_if_due(name, member, api, now)

    def _relist_if_due(self, name: str, member: _Member, api: Any, now: float) -> None:
        """Every `relist_seconds` of a synced connection, the relist safety net over the member's nodes, pods
        and Jobs, in the background: what a watch missed (deleted, or recreated under the same name) is
        dropped or replaced, as in the hub's own cluster."""
        if self.relist_seconds <= 0 or name not in self.cache.member_state.synced or now - member.last_relist < self.relist_seconds:
            return
        member.last_relist = now
        self.sched.spawn(self.relist(name, api))

    async def relist(self, name: str, api: Any) -> list[tuple[str, tuple[str, str]]]:
        handlers = {kind: functools.partial(handler, cluster=name) for kind, handler in WATCHED.items()}
        try:
            return await relist.sweep(self.cache, api, handlers, self.memo, cluster=name)
        except Exception as exc:
            LOG.warning("member %s: the relist safety net could not list it (again in %gs): %s", name,
                        self.relist_seconds, errors.short(exc))
            return []

    def _unreachable(self, name: str, member: _Member, exc: BaseException) -> None:
        assert member.connection is not None
        now = self.monotonic()
        last = member.last_answer if member.last_answer is not None else member.since
        silent = now - last
        lost_after = self.settings.lost_after_seconds
        server = member.connection.server
        self.sched.clusters.disconnected(name, f"{server} does not answer ({errors.short(exc)})")
        if silent >= lost_after:
            message = (f"member cluster {name} ({server}) has not answered for {silent:.0f}s "
                       f"(members.lost_after_seconds={lost_after:g}): lost; its jobs go back to the queue")
            if self._set(name, ("MemberLost", message), lost=True):
                LOG.error("%s (%s)", message, errors.short(exc))
                for key in self.cache.jobs_in_cluster(name):
                    self.sched.job_changed(key)
            member.swept = False
            return
        message = (f"member cluster {name} ({server}) does not answer ({errors.short(exc)}) for {silent:.0f}s; "
                   f"lost after members.lost_after_seconds={lost_after:g}")
        if self._set(name, ("MemberUnreachable", message), lost=name in self.cache.member_state.lost):
            LOG.warning("%s", message)

    def _refuse(self, name: str, member: _Member, reason: str, message: str) -> None:
        """The member cannot be connected to as configured: disconnect, and say why on the center."""
        self._close(name)
        member.fingerprint = ""
        self.sched.clusters.disconnected(name, message)
        if self._set(name, (reason, message), lost=name in self.cache.member_state.lost):
            LOG.error("member %s: %s", name, message)

    def _set(self, name: str, problem: tuple[str, str] | None, lost: bool = False) -> bool:
        changed = self.cache.member_state.set(name, problem, lost)
        if changed:
            self.sched.center_changed()
            self.sched.poke()
        return changed

    def _close(self, name: str) -> None:
        member = self.members.get(name)
        if member is None:
            return
        for task in member.watchers:
            task.cancel()
        member.watchers = []
        self.cache.member_state.synced.discard(name)
        if member.connection is not None:
            member.connection.close()
            member.connection = None


async def sweep(api: Any, cache: Any, cluster: str, hub: str) -> list[str]:
    """Delete every Job this hub made in the member that is not the current attempt of a live
    ComputeJob bound to it. Returns "namespace/name: why" of those deleted."""
    selector = f"{workloads.LABEL_HUB}={workloads.label_value(hub)}"
    listing = await api.run(api.request, "GET", "/apis/batch/v1/jobs", query=[("labelSelector", selector)])
    deleted = []
    for job in listing.get("items") or []:
        meta = job.get("metadata") or {}
        why = None if meta.get("deletionTimestamp") else superseded(cache, cluster, meta.get("labels") or {})
        if why is None:
            continue
        if await api.run(api.delete_job, meta.get("namespace", ""), meta.get("name", ""), str(meta.get("uid") or "")):
            deleted.append(f"{meta.get('namespace')}/{meta.get('name')}: {why}")
    return deleted


def superseded(cache: Any, cluster: str, labels: dict[str, str]) -> str | None:
    """Why a Job with these labels, found in member `cluster`, must go (None: it is a current attempt)."""
    key = (labels.get(workloads.LABEL_NAMESPACE, ""), labels.get(workloads.LABEL_JOB, ""))
    record: records.JobRecord | None = cache.record_for_label(key)
    if record is None or record.uid != labels.get(workloads.LABEL_UID):
        return "its ComputeJob was deleted"
    binding = cache.binding(record)
    if binding is None or binding.cluster != cluster or str(binding.attempt) != labels.get(workloads.LABEL_ATTEMPT, "0"):
        return "its attempt was superseded"
    return None
