"""Two operators with Lease leader election on the local control plane (what the chart's two replicas do;
the Lease is the chart's only mode since kopf peering, which paused only kopf's own handlers, was removed).

Exactly one schedules; SIGKILL the leader and the standby takes the Lease within the lease
duration and binds new jobs; no ComputeJob ever gets two batch Jobs. Watches opened by the test
record every write to ComputeJobs and every batch Job created, so "only one binds" is checked on
what the API server saw, not on what the operators say. A leader whose Lease is taken away exits
non-zero at once, and a clean stop releases the Lease.
Every wait has a deadline; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import collections
import datetime
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import (
    BOUND_OR_LATER,
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    OperatorProcess,  # tests/bench imports it from here too
    assert_ran_in_bound_pool,
    compute_job,
    delete_centers,
    http_status,
    job_phases,
    short_job,
    small_center,
    workloads_per_job,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

TAKEOVER_S = 25.0  # lease 15 s + standby retry 2 s + startup; the brief says "within ~20 s"


@pytest.fixture
def operators(kube: Any, tmp_path: Path) -> Iterator[Any]:
    """`start(name, *extra)` starts an operator; all are stopped after the test."""
    made: list[OperatorProcess] = []

    def start(name: str, *extra: str, wait_healthy: bool = True) -> OperatorProcess:
        op = OperatorProcess(kube.kubeconfig, tmp_path, name, extra)
        made.append(op)
        return op.start(wait_healthy)

    yield start
    for op in made:
        op.stop()


@pytest.fixture
def center(custom_objects: Any, fake_nodes: Any) -> Iterator[str]:
    name = f"e2e-lease-{uuid.uuid4().hex[:5]}"
    doc = small_center(name, nodes_expected=4)
    fake_nodes(doc, nodes_per_pool=4)
    custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)
    yield name
    delete_centers(custom_objects, [name])


def lease_holder(kube: Any, ns: str, name: str) -> str | None:
    from kubernetes import client

    lease = client.CoordinationV1Api(kube.api_client).read_namespaced_lease(name, ns)
    return lease.spec.holder_identity


def lease_args(identity: str, lease: str, ns: str) -> list[str]:
    return ["--leader-election", "lease", "--identity", identity, "--lease-name", lease, "--lease-namespace", ns,
            "--namespace", ns]


def submit(custom_objects: Any, ns: str, names: list[str]) -> None:
    for name in names:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, ns, "computejobs", short_job(name, ns))


def bound(custom_objects: Any, ns: str, names: list[str]) -> bool:
    current = job_phases(custom_objects, ns)
    return all(current.get(n) in BOUND_OR_LATER for n in names)


def test_one_leader_schedules_and_the_standby_takes_over_after_sigkill(
    kube: Any, operators: Any, center: str, namespace: str, custom_objects: Any, wait_for: Any
) -> None:
    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    b = operators("b", *lease_args("b", lease, namespace))
    # b is a standby: alive (/healthz 200), not ready (/readyz 503), and says so in its log.
    assert http_status(b.url("/readyz")) == 503
    wait_for(lambda: "standby" in b.log_text(), 30, b.log_tail, what="b to log that it waits as a standby")

    first = [f"first-{i}" for i in range(6)]
    submit(custom_objects, namespace, first)
    wait_for(lambda: all(p == "Succeeded" for p in job_phases(custom_objects, namespace).values()) and
             len(job_phases(custom_objects, namespace)) == len(first), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="the first jobs to succeed under leader a")
    # The operator is cluster-wide and the local cluster may be shared with other test sessions:
    # a counts their jobs too (>=); the standby must have bound nothing at all.
    assert a.metric("suanli_binds_total") >= len(first)
    assert b.metric("suanli_binds_total") == 0, "the standby must not schedule"
    assert "cache primed" not in b.log_text(), "the standby must not even fill its cache"
    assert lease_holder(kube, namespace, lease) == "a"

    killed = time.monotonic()
    a.kill()
    wait_for(lambda: lease_holder(kube, namespace, lease) == "b", TAKEOVER_S, b.log_tail, what="b to take over")
    takeover = time.monotonic() - killed
    second = [f"second-{i}" for i in range(6)]
    submit(custom_objects, namespace, second)
    wait_for(lambda: bound(custom_objects, namespace, second), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="b to bind the new jobs")
    first_binds = time.monotonic() - killed
    wait_for(lambda: all(p == "Succeeded" for p in job_phases(custom_objects, namespace).values()), EXPECT_TIMEOUT_S,
             lambda: job_phases(custom_objects, namespace), what="every job to succeed")
    assert b.metric("suanli_binds_total") >= 1, b.log_tail()

    # One batch Job per ComputeJob, never two, its pods on nodes of the pool its binding names.
    assert_ran_in_bound_pool(kube, namespace, *first, *second, exclusive=True)
    print(f"lease takeover {takeover:.1f}s after SIGKILL; new jobs bound {first_binds:.1f}s after it", file=sys.stderr)

    # A clean stop hands the Lease back at once (holder cleared) instead of making a successor wait 15 s.
    b.stop()
    assert b.proc is not None and b.proc.returncode == 0, b.log_tail()
    assert lease_holder(kube, namespace, lease) is None


def test_a_leader_whose_lease_is_taken_exits_non_zero_within_the_lease_duration(
    kube: Any, operators: Any, namespace: str, wait_for: Any
) -> None:
    from kubernetes import client

    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    assert a.proc is not None and a.proc.poll() is None, f"a exited while it held its Lease:\n{a.log_tail()}"
    coordination = client.CoordinationV1Api(kube.api_client)
    current = coordination.read_namespaced_lease(lease, namespace)
    current.spec.holder_identity = "intruder"  # e.g. another replica after a long pause of this one
    coordination.replace_namespaced_lease(lease, namespace, current)
    taken = time.monotonic()
    wait_for(lambda: a.proc.poll() is not None, 15, a.log_tail, what="a to exit after losing its Lease")
    assert a.proc.returncode == 1, a.log_tail()
    assert "lost the leadership" in a.log_text()
    print(f"leader exited {time.monotonic() - taken:.1f}s after losing the Lease", file=sys.stderr)


# --- only the Lease holder ever binds, across a SIGKILL mid-run --------------------------------

GRACE_S = 2.0  # a write the killed leader sent just before SIGKILL may reach the test's watch this late
RUN_S = "10s"  # how long each job's pod runs (kwok), plus up to JITTER_S: long enough to kill mid-run
JITTER_S = "4s"


class Recorder:
    """Every change of one resource the API server reports, from a watch opened now, each stamped
    with the wall time it reached the test. `list_fn(*args, **kwargs)` is a kubernetes-client list call."""

    def __init__(self, list_fn: Callable[..., Any], *args: Any, **kwargs: Any):
        self.list_fn, self.args, self.kwargs = list_fn, args, kwargs
        first = list_fn(*args, **kwargs)
        self.version = first["metadata"]["resourceVersion"] if isinstance(first, dict) else first.metadata.resource_version
        self.events: list[tuple[float, str, dict[str, Any]]] = []  # (wall time, ADDED/MODIFIED/DELETED, object)
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"record-{list_fn.__name__}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from kubernetes import watch

        while not self._stopping.is_set():
            try:
                # Short server-side timeouts so stop() is quick; every reconnect resumes where the last left off.
                for event in watch.Watch().stream(self.list_fn, *self.args, resource_version=self.version,
                                                  timeout_seconds=5, deserialize=False, **self.kwargs):
                    obj = event["object"]
                    self.version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        self.events.append((time.time(), event["type"], obj))
            except BaseException as exc:  # e.g. 410 Gone: events were lost, so nothing recorded can be trusted
                self.error = exc
                return

    def stop(self) -> list[tuple[float, str, dict[str, Any]]]:
        self._stopping.set()
        self._thread.join(timeout=15)
        assert not self._thread.is_alive(), f"the {self._thread.name} watch did not stop"
        assert self.error is None, f"the {self._thread.name} watch failed, so it may have missed writes: {self.error!r}"
        return list(self.events)


def bound_writes(events: list[tuple[float, str, dict[str, Any]]]) -> dict[tuple[str, str, str], list[float]]:
    """(namespace, name, uid) of every ComputeJob -> when each write that bound it arrived: a write that
    left it Bound with a status other than before (the next write of one binder is Running), or gave it
    another boundTime. A second binder shows as a second, even one writing in the same second, unless it
    wrote the very same status: a no-op the API server does not record (its Bound Event still counts)."""
    last: dict[str, dict[str, Any]] = {}
    out: dict[tuple[str, str, str], list[float]] = collections.defaultdict(list)
    for at, kind, obj in events:
        meta, status = obj["metadata"], obj.get("status") or {}
        before = last.get(meta["uid"], {})
        last[meta["uid"]] = status
        if kind == "DELETED" or not status.get("boundTime"):
            continue
        if (status.get("phase") == "Bound" and status != before) or status["boundTime"] != before.get("boundTime"):
            out[(meta["namespace"], meta["name"], meta["uid"])].append(at)
    return dict(out)


def bound_events(core_v1: Any, ns: str) -> dict[str, list[tuple[int, str]]]:
    """ComputeJob uid -> its Bound Events as (count, writer: reportingInstance, else source.host)."""
    out: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for ev in core_v1.list_namespaced_event(ns).items:
        if ev.reason != "Bound" or ev.involved_object.kind != "ComputeJob":
            continue
        count = ev.series.count if ev.series else (ev.count or 1)
        writer = ev.reporting_instance or (ev.source.host if ev.source else None) or ""
        out[ev.involved_object.uid].append((int(count), writer))
    return dict(out)


def test_only_the_lease_holder_ever_binds_across_a_sigkill_mid_run(
    kube: Any, operators: Any, center: str, namespace: str, custom_objects: Any, batch_v1: Any, core_v1: Any,
    wait_for: Any
) -> None:
    """Jobs go in while both replicas run; the leader is SIGKILLed with jobs running and queued; more go in
    while nobody holds the Lease. Then, from the API server's own record (watches opened before any job):
    (a) every ComputeJob has exactly one batch Job, ever; (b) every one was bound by exactly one write and
    has exactly one Bound Event; (c) every binding came from the replica holding the Lease: the standby's
    own count of bindings equals the bindings made after it took the Lease, and nothing at all was
    written between the SIGKILL and the takeover (the standby wrote nothing while it was one)."""
    from kubernetes import client

    lease = f"suanli-leader-{uuid.uuid4().hex[:5]}"
    jobs = Recorder(custom_objects.list_cluster_custom_object, GROUP, VERSION, "computejobs")
    workloads = Recorder(batch_v1.list_job_for_all_namespaces, label_selector="suanli.io/job")
    a = operators("a", *lease_args("a", lease, namespace))
    wait_for(lambda: lease_holder(kube, namespace, lease) == "a", 30, a.log_tail, what="a to take the Lease")
    b = operators("b", *lease_args("b", lease, namespace))
    wait_for(lambda: "standby" in b.log_text(), 30, b.log_tail, what="b to log that it waits as a standby")

    # 4 nodes x 8 GPUs and jobs of 8 GPUs: four run at a time, the rest queue.
    run = {"pod-complete.stage.kwok.x-k8s.io/delay": RUN_S, "pod-complete.stage.kwok.x-k8s.io/jitter-delay": JITTER_S}
    first, second = [f"first-{i}" for i in range(8)], [f"second-{i}" for i in range(4)]
    for name in first:
        custom_objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", compute_job(name, namespace, count=8, annotations=run))

    def running_with_events() -> bool:
        """a bound the four that fit, their pods run, their Bound Events are written: a is idle until a pod ends."""
        phases = job_phases(custom_objects, namespace)
        running = [n for n, p in phases.items() if p == "Running"]
        return (len(running) == 4 and sum(p == "Queued" for p in phases.values()) == 4
                and len(bound_events(core_v1, namespace)) == 4)

    wait_for(running_with_events, EXPECT_TIMEOUT_S, lambda: job_phases(custom_objects, namespace),
             what="four jobs Running under a, four Queued")
    assert b.metric("suanli_binds_total") == 0, "the standby must not bind"
    killed = time.time()
    a.kill()
    submit_more = [compute_job(name, namespace, count=8, annotations=run) for name in second]
    for doc in submit_more:  # nobody holds the Lease now: these wait for b
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
    wait_for(lambda: lease_holder(kube, namespace, lease) == "b", TAKEOVER_S, b.log_tail, what="b to take over")
    held = client.CoordinationV1Api(kube.api_client).read_namespaced_lease(lease, namespace).spec
    took_over = held.acquire_time.replace(tzinfo=held.acquire_time.tzinfo or datetime.UTC).timestamp()
    assert took_over > killed, "b took the Lease only after a was gone"

    names = first + second
    wait_for(lambda: sorted(n for n, p in job_phases(custom_objects, namespace).items() if p == "Succeeded") == sorted(names),
             EXPECT_TIMEOUT_S * 2, lambda: job_phases(custom_objects, namespace), what="every job to succeed")
    b_binds = b.metric("suanli_binds_total")
    job_events, created = jobs.stop(), workloads.stop()

    # (a) one batch Job per ComputeJob, now and ever (a Job deleted and made again shows as two ADDED).
    assert workloads_per_job(batch_v1, namespace) == dict.fromkeys(names, 1), "one batch Job per ComputeJob"
    made = collections.Counter(o["metadata"]["labels"]["suanli.io/job"] for at, kind, o in created
                               if kind == "ADDED" and o["metadata"]["namespace"] == namespace)
    assert made == dict.fromkeys(names, 1), f"batch Jobs created per ComputeJob: {dict(made)}"

    # (b) each job bound by one write, with one Bound Event.
    writes = bound_writes(job_events)
    ours = {key: times for key, times in writes.items() if key[0] == namespace}
    assert {key[1]: len(times) for key, times in ours.items()} == dict.fromkeys(names, 1), "one binding write per job"
    events = bound_events(core_v1, namespace)
    assert {uid: sum(c for c, _ in evs) for uid, evs in events.items()} == {key[2]: 1 for key in ours}, (
        "one Bound Event per job"
    )

    # (c) the Lease holder, and only it, bound. a held the Lease until the SIGKILL and b from its
    # acquireTime on; in between nobody did, and the API server saw no write to a ComputeJob and no
    # batch Job created.
    quiet = [
        (kind, o["kind"], o["metadata"]["name"])
        for at, kind, o in [*job_events, *created]
        if killed + GRACE_S < at < took_over and o["metadata"]["namespace"] == namespace
        and not (kind == "ADDED" and o["kind"] == "ComputeJob")  # the test's own second batch
        and not (kind == "MODIFIED" and o["kind"] == "Job")  # the Job controller counting finished pods
    ]
    assert quiet == [], f"written while nobody held the Lease: {quiet}"
    by_a = {key for key, (at,) in ours.items() if at < took_over}
    by_b = {key for key, (at,) in ours.items() if at >= took_over}
    assert {key[1] for key in by_a} <= set(first) and len(by_a) >= 4, by_a
    assert set(second) <= {key[1] for key in by_b}, "the jobs submitted after the SIGKILL were bound by b"
    after = sum(1 for times in writes.values() for at in times if at >= took_over)  # cluster-wide, as b counts
    assert b_binds == after, (
        f"b counted {b_binds:g} bindings, the API server saw {after} after b took the Lease: b bound before it held it"
    )
    log = b.log_text()
    assert log.index("b is the leader now") < log.index("cache primed"), "the standby did not even read before leading"
    # And each Bound Event names the replica that wrote it (`suanli run` gives the Api its Lease identity).
    writer = {uid: {w for _, w in evs} for uid, evs in events.items()}
    assert {key[1]: writer[key[2]] for key in by_a} == {key[1]: {"a"} for key in by_a}, "a's bindings name a"
    assert {key[1]: writer[key[2]] for key in by_b} == {key[1]: {"b"} for key in by_b}, "b's bindings name b"
    print(f"a bound {len(by_a)} jobs, b {len(by_b)}; b took the Lease {took_over - killed:.1f}s after the SIGKILL",
          file=sys.stderr)
