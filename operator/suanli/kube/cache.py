"""The operator's in-memory mirror of the API: centers, nodes, pods, ComputeJobs and Suanli's Jobs.

Handlers put API objects in (`upsert_*` / `delete_*`); the scheduler takes a snapshot of it
(`kube/snapshot.py`). What each bound job holds is kept in step as its status, pods and workload
change (`kube/holds.py`); finished jobs' energy is summed as they finish (`kube/settled.py`).

Everything in here is rebuilt from the API after a restart: a bound job is one whose status
says so (or one this process bound a moment ago: `assume`). No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Mapping
from typing import Any

from suanli import settings as settings_mod
from suanli.api import manifests, objects
from suanli.kube import devices as devices_mod
from suanli.kube import holds as holds_mod
from suanli.kube import keyed_heap, member_state, pod_index, pool_overlap, records, set_aside
from suanli.kube import objects as kobj
from suanli.kube import settled as settled_mod
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import tenants as tenants_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import fleet as fleet_mod

Key = kobj.Key


class Cache:
    """Mirror of centers, nodes, pods, ComputeJobs and Suanli's batch Jobs.

    Kept so that a snapshot costs O(pools + nodes + jobs not finished), not O(everything ever
    seen): accelerators in use per node are summed as pods come and go, finished jobs' energy is
    summed as they finish (`settled.SettledEnergy`), and only unfinished jobs (`active`) are walked.
    """

    def __init__(self, settings: settings_mod.Settings | None = None):
        self.settings = settings or settings_mod.Settings()
        self.centers: dict[str, objects.ComputeCenter] = {}
        self.center_raw: dict[str, dict[str, Any]] = {}
        self.center_errors: dict[str, str] = {}
        self.nodes: dict[str, kobj.NodeInfo] = {}
        self.pod_index = pod_index.PodIndex()
        self.devices = devices_mod.Devices()  # DRA: ResourceSlices, DeviceClasses, ResourceClaims
        self.set_aside = set_aside.SetAside()  # the waiting queue, filed across cycles (kube/set_aside.py)
        self.jobs: dict[Key, records.JobRecord] = {}
        self.active: set[Key] = set()  # jobs neither finished nor Invalid
        self.placed: set[Key] = set()  # active jobs with a binding (assumed or in their status)
        self.by_label: dict[Key, Key] = {}  # (namespace, job label) -> job
        self.phases: collections.Counter[str] = collections.Counter()  # jobs by their status phase
        # Bound, unfinished jobs: what each holds, and the sums a snapshot needs. Recomputed only for
        # jobs something happened to (`_dirty`: their status, pods or workload changed).
        self.holds = holds_mod.Holds()
        self.settled = settled_mod.SettledEnergy()
        self.tenants = tenants_mod.Tenants(self.settings)  # ComputeQueues, namespace labels, settled use by queue
        self.workloads: dict[Key, kobj.WorkloadInfo] = {}  # by (namespace, job label)
        self.assumed: dict[Key, records.Binding] = {}  # bound by this process, status maybe not seen yet
        # Jobs deleted, or recreated under their name (another uid), since the scheduler last looked
        # (`take_replaced`): what it keeps for them (retries, checks) is dropped, without a scan of all.
        self.replaced: set[Key] = set()
        # Member clusters' connections, set by suanli/members: a member with a problem takes no new jobs.
        self.member_state = member_state.MemberState()
        self._fleet: fleet_mod.Fleet | None = None
        self._fleet_regions: frozenset[str] = frozenset()
        self._members: tuple[fleet_mod.Fleet, list[Any], pool_overlap.Assignment] | None = None
        self._members_usable = True  # False: a node's readiness or capacity changed since `_members` was taken
        # Waiting, schedulable jobs whose phase is Queued, by creation time (`oldest_queued` without a pass
        # over the queue).
        self._queued: keyed_heap.KeyedHeap[Key] = keyed_heap.KeyedHeap()

    # --- centers ----------------------------------------------------------------------

    def upsert_center(self, raw: Mapping[str, Any]) -> None:
        name = kobj.key_of(raw)[1]
        self.center_raw[name] = dict(raw)
        try:
            parsed = manifests.parse_object({k: v for k, v in raw.items() if k != "status"}, "API")
        except manifests.InvalidManifests as exc:
            self.center_errors[name] = str(exc.errors[0]) if exc.errors else str(exc)
            self.centers.pop(name, None)
            self._fleet = None
            return
        self.center_errors.pop(name, None)
        assert isinstance(parsed, objects.ComputeCenter)
        old = self.centers.get(name)
        if old is None or old.spec != parsed.spec:
            self._fleet = None
        self.centers[name] = parsed

    def delete_center(self, name: str) -> None:
        self.centers.pop(name, None)
        self.center_raw.pop(name, None)
        self.center_errors.pop(name, None)
        self._fleet = None

    # --- nodes and pods ---------------------------------------------------------------

    def upsert_node(self, raw: Mapping[str, Any], cluster: str = "") -> bool:
        """Returns True when the change can matter for capacity. `cluster`: the member center whose
        cluster the node is in ("": the operator's own); the cache names it qualified (`kobj.qualify`)."""
        info = kobj.node_info(raw, cluster)
        old = self.nodes.get(info.name)
        self.nodes[info.name] = info
        if old != info:
            if old is not None and old.labels == info.labels and old.cluster == info.cluster:
                self._members_usable = False  # the same claims (kube/pool_overlap.py): its readiness or capacity
            else:
                self._members = None
        return old != info

    def delete_node(self, name: str, cluster: str = "") -> bool:
        gone = self.nodes.pop(kobj.qualify(cluster, name), None) is not None
        if gone:
            self._members = None
        return gone

    def accelerators_on(self, pool: fleet_mod.PoolInfo, node: str) -> tuple[int, int]:
        """(accelerators `pool` counts on `node` (qualified name), how many of them are in use): the
        device plugin's allocatable and the non-terminated pods' requests, or, for a DRA pool, the
        devices its DeviceClass and selectors select in the node's ResourceSlices and those claims hold."""
        if pool.device_class_name:
            return self.devices.counts(self.cluster_of(pool.center), pool.device_class_name, pool.selectors, node)
        info = self.nodes.get(node)
        have = info.allocatable.get(pool.resource_name, 0) if info is not None else 0
        return have, self.node_used.get((node, pool.resource_name), 0)

    def pool_problem(self, pool: fleet_mod.PoolInfo) -> str:
        """Why a DRA pool's devices cannot all be counted ("" if they can, and for device-plugin pools)."""
        if not pool.device_class_name:
            return ""
        return self.devices.selected(self.cluster_of(pool.center), pool.device_class_name, pool.selectors).problem

    @property
    def pods(self) -> dict[Key, kobj.PodInfo]:
        return self.pod_index.pods

    @property
    def node_used(self) -> dict[tuple[str, str], int]:
        """(node, resource) -> requested by non-terminated pods."""
        return self.pod_index.node_used

    def upsert_pod(self, raw: Mapping[str, Any], cluster: str = "") -> kobj.PodInfo | None:
        info = kobj.pod_info(raw, cluster)
        if not kobj.pod_info_relevant(info):
            return None
        self.pod_index.put(info)
        if info.job_key is not None:
            self._touch_label(info.job_key)
        return info

    def delete_pod(self, key: Key) -> kobj.PodInfo | None:
        """`key`: as the cache knows the pod (`PodInfo.key`: a member's namespace qualified)."""
        info = self.pod_index.delete(key)
        if info is not None and info.job_key is not None:
            self._touch_label(info.job_key)
        return info

    def _touch_label(self, label_key: Key) -> None:
        job = self.by_label.get(label_key)
        if job is not None:
            self.holds.touch(job)

    def take_replaced(self) -> set[Key]:
        """The jobs deleted or recreated under their name since the last call."""
        taken, self.replaced = self.replaced, set()
        return taken

    def record_for_label(self, label_key: Key) -> records.JobRecord | None:
        """The ComputeJob whose pods and Job carry this (namespace, suanli.io/job label)."""
        job = self.by_label.get(label_key)
        return self.jobs.get(job) if job is not None else None

    def job_pods(self, record: records.JobRecord) -> list[kobj.PodInfo]:
        """The pods of the job's bound attempt (none when it is not bound)."""
        binding = self.binding(record)
        return self.current_pods(record, binding) if binding is not None else []

    def current_pods(self, record: records.JobRecord, binding: records.Binding) -> list[kobj.PodInfo]:
        """Pods carrying the job's label that were made for this ComputeJob (its uid) and this bound
        attempt: never a predecessor's of the same name, never an earlier attempt's still going away.
        (Pods without the uid and attempt labels, made before they existed, count as attempt 0.)"""
        return [
            pod
            for pod in self.pod_index.of_job((record.key[0], record.label))
            if pod.cluster == binding.cluster
            and pod.job_uid in (None, record.uid)
            and (pod.attempt or 0) == binding.attempt
        ]

    def lost_replica(self, record: records.JobRecord, binding: records.Binding) -> str | None:
        """Why a pod of the bound attempt was deleted before it finished (its DELETED event may be all
        that is left of it), or None."""
        lost = self.pod_index.lost.get((record.key[0], record.label))
        if lost is None or lost[0] not in (record.uid, None) or lost[1] != binding.attempt:
            return None
        return lost[2]

    # --- ComputeJobs and their workloads ----------------------------------------------

    def upsert_job(self, raw: Mapping[str, Any], created_default: float) -> records.JobRecord:
        key = kobj.key_of(raw)
        old = self.jobs.get(key)
        meta = raw.get("metadata") or {}
        if old is not None and old.uid == meta.get("uid") and _older(meta, old.raw):
            return old  # a LIST taken before the event we already have (startup race)
        if old is not None:
            self.phases[old.phase] -= 1
        if old is not None and old.uid != meta.get("uid"):
            self.replaced.add(key)
        if old is not None and old.generation == meta.get("generation") and old.uid == meta.get("uid"):
            old.raw = records.trimmed(raw)  # same spec: keep the parsed object and demand
            record = old
        else:
            created = kobj.parse_time(meta.get("creationTimestamp")) or created_default
            try:
                parsed = manifests.parse_object({k: v for k, v in raw.items() if k != "status"}, "API")
                assert isinstance(parsed, objects.ComputeJob)
                # The parsed model is dropped once the demand is resolved: it is most of a record's memory.
                demand = demand_mod.from_job(parsed, self.settings.scoring.default_runtime_seconds, created)
                record = records.JobRecord(key=key, raw=records.trimmed(raw), demand=demand, parse_error=None, created=created)
                regions = {parsed.spec.data.region, *parsed.spec.data.allowed_regions} - {None}
                if not regions <= self._fleet_regions:
                    self._fleet = None
            except manifests.InvalidManifests as exc:
                first = exc.errors[0] if exc.errors else None
                problem = (first.field or "spec", first.message) if first else ("spec", str(exc))
                record = records.JobRecord(key=key, raw=records.trimmed(raw), demand=None, parse_error=problem, created=created)
            self.jobs[key] = record
        record.set_status(raw.get("status"))
        self.phases[record.phase] += 1
        self.by_label[(key[0], record.label)] = key
        if record.phase in records.PLACED_PHASES:
            self.assumed.pop(key, None)  # the status carries the binding now
        self._file(record)
        self.holds.touch(key)
        return record

    def _file(self, record: records.JobRecord) -> None:
        """Keep `active` and the settled energy in step with the record's phase."""
        key = record.key
        if record.phase in records.DONE_PHASES or record.phase == "Invalid":
            self.active.discard(key)
        else:
            self.active.add(key)
        self._file_placed(key)
        settlements = records.settlements(record)
        self.settled.put_all(key, [(center, at, amounts) for center, _, at, amounts in settlements])
        self.tenants.file(key, settlements)

    def _file_placed(self, key: Key) -> None:
        record = self.jobs.get(key)
        if key in self.active and record is not None and self.binding(record) is not None:
            self.placed.add(key)
        else:
            self.placed.discard(key)

    def delete_job(self, key: Key) -> records.JobRecord | None:
        self.assumed.pop(key, None)
        self.active.discard(key)
        self.placed.discard(key)
        self.settled.drop(key)
        self.tenants.settled.drop(key)
        self.tenants.forget(key)
        self.holds.touch(key)
        record = self.jobs.pop(key, None)
        if record is not None:
            self.replaced.add(key)
            self.phases[record.phase] -= 1
            if self.by_label.get((key[0], record.label)) == key:
                del self.by_label[(key[0], record.label)]
        return record

    def upsert_workload(self, raw: Mapping[str, Any], cluster: str = "") -> kobj.WorkloadInfo:
        """`cluster`: the member center whose cluster the Job is in ("": the operator's own)."""
        info = kobj.workload_info(raw, cluster)
        self.workloads[(info.key[0], info.job_label)] = info
        self._touch_label((info.namespace, info.job_label))
        return info

    def delete_workload(self, raw: Mapping[str, Any], cluster: str = "") -> None:
        info = kobj.workload_info(raw, cluster)
        slot = (info.key[0], info.job_label)
        cached = self.workloads.get(slot)
        if cached is not None and (not info.uid or cached.uid in ("", info.uid)):
            del self.workloads[slot]  # (a late DELETED of an earlier Job never drops its successor)
        self._touch_label((info.namespace, info.job_label))

    def workload_slot(self, record: records.JobRecord, binding: records.Binding | None) -> Key:
        """Where the cache keeps the batch Job of `record` in the cluster of `binding` (none: the hub's)."""
        return (kobj.qualify(binding.cluster if binding is not None else "", record.key[0]), record.label)

    def workload_of(self, record: records.JobRecord) -> kobj.WorkloadInfo | None:
        """The batch Job of the job's bound attempt (in its binding's cluster), if it exists and is not
        being deleted."""
        binding = self.binding(record)
        workload = self.workloads.get(self.workload_slot(record, binding))
        if workload is None or binding is None or workload.deleting:
            return None
        if workload.owner_uid not in (None, record.uid) or (workload.attempt or 0) != binding.attempt:
            return None
        return workload

    def stale_workload(self, record: records.JobRecord) -> kobj.WorkloadInfo | None:
        """A batch Job of this name that is not the bound attempt's (an earlier attempt's, an earlier
        ComputeJob's of the same name, or one being deleted), if any."""
        workload = self.workloads.get(self.workload_slot(record, self.binding(record)))
        if workload is None or workload is self.workload_of(record):
            return None
        return workload

    # --- binding ------------------------------------------------------------------------

    def assume(self, key: Key, binding: records.Binding) -> None:
        """Record a decision before it is written, so the next snapshot already counts it."""
        self.assumed[key] = binding
        self._file_placed(key)
        self.holds.touch(key)

    def forget(self, key: Key) -> None:
        """Undo an assumption (the write failed); the job is planned again."""
        self.assumed.pop(key, None)
        self._file_placed(key)
        self.holds.touch(key)

    def binding(self, record: records.JobRecord) -> records.Binding | None:
        return self.assumed.get(record.key) or record.recorded

    def _placed_jobs(self) -> Iterator[tuple[Key, records.Binding]]:
        """(job, binding) of every unfinished job with a binding (assumed, Bound or Running), by key: a
        cycle pays for the jobs that hold accelerators, not for the queue waiting behind them."""
        for key in sorted(self.placed):
            binding = self.binding(self.jobs[key])
            assert binding is not None, f"{key} filed as placed without a binding"
            yield key, binding

    def placed_records(self) -> Iterator[tuple[records.JobRecord, records.Binding]]:
        """(record, binding) of every unfinished job with a binding."""
        for key, binding in self._placed_jobs():
            yield self.jobs[key], binding

    def bound_to_node(self, node: str) -> list[Key]:
        """Unfinished jobs whose binding places a replica on `node`: what a change of that node may
        strand (`gates.stranded`)."""
        return [key for key, binding in self._placed_jobs() if node in binding.nodes]

    def finished(self, record: records.JobRecord) -> bool:
        if record.phase in records.DONE_PHASES:
            return True
        workload = self.workload_of(record)
        return workload is not None and workload.finished

    def schedulable(self, record: records.JobRecord) -> bool:
        """Waiting for a decision: valid, not bound (in memory or in its status), not finished."""
        if record.demand is None or record.key in self.assumed or record.deleting or record.suspended:
            return False
        return record.phase not in records.NOT_SCHEDULABLE_PHASES

    def phase_counts(self) -> dict[str, int]:
        """Jobs per phase as a person reads them (a job bound by this process a moment ago is Bound)."""
        counts = collections.Counter({phase: n for phase, n in self.phases.items() if n})
        for key in self.assumed:
            record = self.jobs.get(key)
            if record is not None and record.phase not in records.PLACED_PHASES:
                counts[record.phase] -= 1
                counts["Bound"] += 1
        return dict(counts)

    def oldest_queued(self) -> float | None:
        """Creation time of the longest-waiting Queued job."""
        self.refresh_holds()
        oldest = self._queued.peek()
        return oldest[0] if oldest is not None else None

    # --- the snapshot -------------------------------------------------------------------

    def fleet(self) -> fleet_mod.Fleet:
        if self._fleet is None:
            regions = {
                r
                for rec in self.jobs.values()
                if rec.demand is not None
                for r in (rec.demand.data_region, *rec.demand.allowed_regions)
                if r
            }
            centers = [self.centers[n] for n in sorted(self.centers)]
            self._fleet = fleet_mod.build(centers, extra_regions=sorted(regions))
            self._fleet_regions = frozenset(self._fleet.regions)  # the centers' regions and the jobs'
            self._members = None
        return self._fleet

    def pool_members(self, fleet: fleet_mod.Fleet) -> tuple[list[Any], list[list[kobj.NodeInfo]], list[str]]:
        """Per pool of `fleet`: its spec, the usable nodes it counts (by name) and why it is refused
        ("" if it is not: a node is never counted in two pools, kube/pool_overlap.py); kept until a
        node or the fleet changes."""
        if self._members is None or self._members[0] is not fleet:
            specs = [self.pool_spec(info.center, info.pool) for info in fleet.pools]
            assigned = pool_overlap.assign(fleet.pools, specs, self.centers, self.center_raw, self.nodes)
            self._members, self._members_usable = (fleet, specs, assigned), True
        if not self._members_usable:  # only readiness or capacity changed: the claims stand (a heartbeat
            # of thousands of kwok nodes would otherwise match every pool's selector on every node each cycle)
            self._members = (fleet, self._members[1], pool_overlap.usable(self._members[2], self.nodes))
            self._members_usable = True
        _, specs, assigned = self._members
        return specs, assigned.members, assigned.refused

    def _missing_replicas(self, record: records.JobRecord, binding: records.Binding) -> tuple[int, tuple[str, ...]]:
        """How many replicas of the bound attempt have no running pod on a node and, when the binding
        names each replica's node, those replicas' nodes (by completion index; () otherwise).

        A replica whose pod finished (or failed) counts as missing again: its accelerators stay held
        until the job's terminal phase is written, so a job the API still shows Bound or Running never
        has its accelerators given to the next one."""
        pods = self.current_pods(record, binding)
        if not binding.nodes:
            seen = sum(1 for pod in pods if pod.node is not None and not pod.terminated)
            return max(0, binding.replicas - seen), ()
        placed = {pod.index for pod in pods if pod.node is not None and not pod.terminated}
        nodes = tuple(node for i, node in enumerate(binding.nodes) if i not in placed)
        return len(nodes), nodes

    def waiting(self) -> frozenset[Key]:
        """Unfinished jobs that hold nothing: the queue, and jobs whose spec is invalid."""
        self.refresh_holds()
        return frozenset(self.holds.waiting)

    def _hold_of(self, key: Key) -> holds_mod.Hold | None:
        """What a job holds now (None unless it is bound and not finished).

        Energy, rebuilt from statuses alone (so a restart gets the same numbers): a bound or running
        job reserves its estimate; a job whose workload finished but whose settlement is not written
        yet (measuring, or the write in flight) keeps its reservation, so the budget never looks free
        in between; a job whose status says Succeeded/Failed counts its settled kWh as used
        (`settled.SettledEnergy`), not here.
        """
        record = self.jobs.get(key)
        if record is None or record.demand is None or key not in self.active:
            return None
        binding = self.binding(record)
        if binding is None:
            return None
        missing, nodes = self._missing_replicas(record, binding)
        kwh = binding.energy_kwh if math.isfinite(binding.energy_kwh) and binding.energy_kwh >= 0 else 0.0
        return holds_mod.Hold(binding.center, binding.pool, binding.count, missing, kwh, nodes)

    def refresh_holds(self) -> None:
        """Bring what bound jobs hold, and the queue's filing, up to date with the jobs touched since."""
        changed = self.holds.refresh(self._hold_of, self.active.__contains__)
        if not changed:
            return
        self.set_aside.touch(changed)
        waiting, queued = self.holds.waiting, self._queued
        for key in changed:
            record = self.jobs.get(key)
            if record is not None and key in waiting and record.phase == "Queued" and self.schedulable(record):
                if queued.get(key) != record.created:
                    queued.put(key, record.created)
            else:
                queued.discard(key)

    def snapshot(self, now: float) -> snapshot_mod.Snapshot:
        return snapshot_mod.build(self, now)

    def jobs_in_cluster(self, cluster: str) -> list[Key]:
        """Unfinished jobs bound (or running) in member cluster `cluster`."""
        return [key for key, binding in self._placed_jobs() if binding.cluster == cluster]

    def drop_cluster(self, cluster: str) -> None:
        """Forget a member cluster's nodes, pods and Jobs (its center is gone, or no longer a member)."""
        for name in [n for n, info in self.nodes.items() if info.cluster == cluster]:
            self.nodes.pop(name)
            self._members = None
        for key in self.pod_index.in_cluster(cluster):
            self.delete_pod(key)
        for slot in [k for k, info in self.workloads.items() if info.cluster == cluster]:
            info = self.workloads.pop(slot)
            self._touch_label((info.namespace, info.job_label))
        self.devices.drop_cluster(cluster)
        self.member_state.forget(cluster)

    def cluster_of(self, center: str) -> str:
        """The cluster a center's pools are in: the center's name when it is a member (`spec.cluster`),
        "" for the operator's own cluster (and for a center not known)."""
        parsed = self.centers.get(center)
        return center if parsed is not None and parsed.spec.cluster is not None else ""

    def pool_spec(self, center: str, pool: str) -> Any:
        return next(p for p in self.centers[center].spec.pools if p.name == pool)


def _older(meta: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """True if `meta` is from an older resourceVersion than `current` (etcd revisions are integers;
    anything else compares as not older)."""
    try:
        return int(meta.get("resourceVersion") or 0) < int((current.get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return False
