"""The chaos suite's fault injector, and the operator process it kills and restarts.

Eight kinds of fault (``KINDS``), chosen by the seeded RNG in shuffled rounds (every kind once per
round, so a short run of 8 faults covers all of them; in the last round the kinds that need a job
in some phase come first, while jobs still flow); a kind with no target at the moment (no queued
job to edit, two nodes already down, ...) is skipped for the next one of the round and tried
again later. Each injection picks its target from the latest snapshot, re-reads what it acts on,
and is logged with its time and target. What a fault takes away comes back later (a deleted node
is created again, a cordoned one uncordoned, the operator started again, a deleted ComputeJob
recreated under its name as soon as it is gone): those recoveries are due at seeded times, and
the scenario waits for the last of them (``restore``).

Nothing here blocks for long: the API-server restart (tests/cluster/restart.sh, local control
plane only) runs as a child process that ``step`` polls; the operator is started without waiting
for its health check, which ``OperatorControl.poll`` watches. On a cluster that is not ours
(KUBECONFIG set) the API-server restart is replaced by a graceful operator restart (SIGTERM),
and the report says so.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.chaos import fleet, invariants
from tests.chaos.kubeapi import REQUEST_TIMEOUT_S, Api
from tests.cluster import fake_nodes as fake_nodes_module
from tests.e2e import helpers

KINDS = (
    "operator-sigkill",
    "apiserver-restart",
    "job-deleted",
    "pods-deleted",
    "node-deleted",
    "node-cordoned",
    "computejob-recreated",
    "queued-job-edited",
)
# Kinds that need a job in some phase as their target (the others always have one).
SCARCE = frozenset({"job-deleted", "pods-deleted", "computejob-recreated", "queued-job-edited"})
# Faults a cluster that is not ours cannot take, and what replaces them there.
SUBSTITUTES = {"apiserver-restart": "operator-sigterm"}
MAX_NODES_IMPAIRED = 2  # deleted or cordoned at once, over the fleet
NODE_OUTAGE_SECONDS = (8.0, 25.0)
OPERATOR_DOWN_SECONDS = (0.5, 5.0)
APISERVER_DOWN_SECONDS = (3.0, 10.0)
RECREATE_DEADLINE_S = 90.0
STOP_TIMEOUT_S = 15.0  # SIGTERM, then SIGKILL
APISERVER_RESTART_DEADLINE_S = 240.0
RECOVERY_RETRY_S = 2.0  # a recovery that failed (the API away) is tried again after this long


@dataclasses.dataclass(frozen=True)
class FaultRecord:
    t: float  # seconds since the run started
    wall: str  # UTC time of day
    kind: str
    target: str
    detail: str


@dataclasses.dataclass
class Recovery:
    due: float
    what: str
    target: str
    action: Callable[[float], bool]  # True: done; False: try again next step
    deadline: float
    failed: int = 0  # attempts that raised (the API away)


def _utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S")


class OperatorControl:
    """`suanli run` under test. States: starting -> up (healthz 200), stopping, down. An exit nobody
    asked for is reported by ``poll`` (an ``operator-exited`` finding) and the operator restarted."""

    def __init__(self, op: helpers.Operator, max_unexpected_restarts: int = 5):
        self.op = op
        self.state = "down"
        self.since = 0.0
        self.unexpected_exits: list[str] = []
        self.max_unexpected_restarts = max_unexpected_restarts
        self.start_seconds: list[float] = []

    def start(self, now: float) -> None:
        self.op.start(wait_healthy=False)
        self.state, self.since = "starting", now

    def kill(self, now: float) -> None:
        self.op.kill()
        self.state, self.since = "down", now

    def terminate(self, now: float) -> None:
        if self.op.proc is not None and self.op.proc.poll() is None:
            self.op.proc.terminate()
        self.state, self.since = "stopping", now

    @property
    def up(self) -> bool:
        return self.state == "up"

    def poll(self, now: float) -> str | None:
        """Advance the state; returns a message when the operator exited on its own."""
        proc = self.op.proc
        if self.state in ("starting", "up") and proc is not None and proc.poll() is not None:
            msg = (f"the operator exited with status {proc.returncode} while {self.state} "
                   f"({self.op.log_path}): {self.op.log_tail(5)[-600:]}")
            self.unexpected_exits.append(msg)
            if len(self.unexpected_exits) <= self.max_unexpected_restarts:
                self.start(now)
            else:
                self.state = "down"
            return msg
        if self.state == "starting" and helpers.http_status(self.op.url("/healthz"), 1.0) == 200:
            self.start_seconds.append(now - self.since)
            self.state, self.since = "up", now
        elif self.state == "stopping" and (proc is None or proc.poll() is not None):
            self.state, self.since = "down", now
        elif self.state == "stopping" and now - self.since > STOP_TIMEOUT_S:
            self.kill(now)
        return None


class Injector:
    """Injects ``faults`` faults, paced with the submissions (fault i once (i+1)/(faults+1) of the
    jobs are submitted) and at least ``min_gap_s`` apart."""

    def __init__(
        self, api: Api, operator: OperatorControl, rng: random.Random, *, namespace: str, total_faults: int,
        total_jobs: int, min_gap_s: float, local: bool, node_manifests: dict[str, dict[str, Any]],
        log_dir: Path, log: Callable[[str], None],
    ):
        self.api, self.operator, self.rng, self.ns = api, operator, rng, namespace
        self.total_faults, self.total_jobs, self.min_gap_s = total_faults, total_jobs, min_gap_s
        self.local, self.node_manifests, self.log_dir, self.log = local, node_manifests, log_dir, log
        self.records: list[FaultRecord] = []
        self.recoveries: list[Recovery] = []
        self.notes: list[str] = []
        self.plan: list[str] = []
        self.last_fault = -1e9
        self.gap = min_gap_s
        self.blocking: tuple[subprocess.Popen[bytes], float, float, str] | None = None  # proc, started, deadline, what
        self.impaired: set[str] = set()  # nodes deleted or cordoned, until seen usable again
        self.recreating: set[str] = set()
        self.edited: set[str] = set()
        self.aborted: str | None = None

    # --- bookkeeping ---------------------------------------------------------------------

    def kind(self, kind: str) -> str:
        """The kind actually injected on this cluster."""
        return kind if self.local else SUBSTITUTES.get(kind, kind)

    def record(self, now: float, kind: str, target: str, detail: str = "") -> None:
        rec = FaultRecord(round(now, 1), _utc(), kind, target, detail)
        self.records.append(rec)
        self.log(f"fault {len(self.records)}/{self.total_faults} t={rec.t:.1f}s {kind} {target} {detail}".rstrip())

    def later(self, now: float, delay: float, what: str, target: str, action: Callable[[float], bool],
              deadline_s: float = RECREATE_DEADLINE_S) -> None:
        self.recoveries.append(Recovery(now + delay, what, target, action, now + delay + deadline_s))

    @property
    def done(self) -> bool:
        return len(self.records) >= self.total_faults and self.blocking is None

    # --- the step ----------------------------------------------------------------------

    def step(self, now: float, snap: dict[str, Any] | None, submitted: int) -> None:
        self._poll_blocking(now)
        self._run_recoveries(now, force=False)
        if snap is not None:
            self._forget_recovered_nodes(snap)
        if self.blocking is not None or snap is None or self.aborted or len(self.records) >= self.total_faults:
            return
        i = len(self.records)
        paced = submitted >= min(self.total_jobs, (i + 1) * self.total_jobs / (self.total_faults + 1))
        if not paced or now - self.last_fault < self.gap:
            return
        if not self.plan:
            self.plan = list(KINDS)
            self.rng.shuffle(self.plan)
            if self.total_faults - len(self.records) <= len(KINDS):
                # The last round: kinds whose targets come and go (a queued job to edit, a running
                # one to hit) first, while jobs still flow; the others can always be injected.
                self.plan.sort(key=lambda kind: kind not in SCARCE)
        for kind in list(self.plan):
            if self._inject(now, self.kind(kind), snap):
                self.plan.remove(kind)
                self.last_fault = now
                self.gap = self.rng.uniform(self.min_gap_s, 2 * self.min_gap_s)
                return

    def restore(self, now: float, force: bool) -> None:
        """Run the recoveries that are due (``force``: all of them, now); called repeatedly until
        none is left."""
        self._poll_blocking(now)
        self._run_recoveries(now, force=force)

    @property
    def restoring(self) -> bool:
        return bool(self.recoveries) or self.blocking is not None

    def _poll_blocking(self, now: float) -> None:
        if self.blocking is None:
            return
        proc, started, deadline, what = self.blocking
        rc = proc.poll()
        if rc is None and now < deadline:
            return
        if rc is None:
            proc.kill()
            proc.wait(timeout=30)
            self.aborted = f"{what} did not finish within {deadline - started:.0f}s"
        elif rc != 0:
            self.aborted = f"{what} failed (exit {rc}); see {self.log_dir / 'restart.log'}"
        else:
            self.log(f"{what}: back after {now - started:.1f}s")
        self.blocking = None

    def _run_recoveries(self, now: float, force: bool) -> None:
        for rec in list(self.recoveries):
            if not force and now < rec.due:
                continue
            try:
                done = rec.action(now)
            except Exception as exc:  # the API may be away: try again in a moment
                done = False
                rec.due = now + RECOVERY_RETRY_S
                if not rec.failed:
                    self.log(f"recovery {rec.what} {rec.target} failed for now (retrying every {RECOVERY_RETRY_S:g}s): "
                             f"{exc!r:.200}")
                rec.failed += 1
            if done:
                self.recoveries.remove(rec)
                self.log(f"recovered t={now:.1f}s {rec.what} {rec.target}")
            elif now > rec.deadline:
                self.recoveries.remove(rec)
                self.notes.append(f"gave up on {rec.what} {rec.target} at t={now:.0f}s")
                self.log(self.notes[-1])

    def _forget_recovered_nodes(self, snap: dict[str, Any]) -> None:
        usable = {invariants.meta(n).get("name") for n in snap["nodes"] if invariants.node_usable(n)}
        pending = {r.target for r in self.recoveries}
        self.impaired = {n for n in self.impaired if n in pending or n not in usable}

    # --- the faults --------------------------------------------------------------------

    def _inject(self, now: float, kind: str, snap: dict[str, Any]) -> bool:
        inject = {
            "operator-sigkill": self._operator_sigkill,
            "operator-sigterm": self._operator_sigterm,
            "apiserver-restart": self._apiserver_restart,
            "job-deleted": self._job_deleted,
            "pods-deleted": self._pods_deleted,
            "node-deleted": self._node_deleted,
            "node-cordoned": self._node_cordoned,
            "computejob-recreated": self._computejob_recreated,
            "queued-job-edited": self._queued_job_edited,
        }[kind]
        try:
            return inject(now, snap)
        except Exception as exc:  # a target that went away meanwhile, an API hiccup: another time
            self.log(f"could not inject {kind} now: {exc!r:.300}")
            return False

    def _restart_operator_later(self, now: float) -> None:
        def restart(t: float) -> bool:
            if self.operator.state == "stopping":
                return False
            if self.operator.state == "down":
                self.operator.start(t)
            return True

        self.later(now, self.rng.uniform(*OPERATOR_DOWN_SECONDS), "operator restart", "suanli run", restart)

    def _operator_sigkill(self, now: float, snap: dict[str, Any]) -> bool:
        if not self.operator.up:
            return False
        pid = self.operator.op.proc.pid if self.operator.op.proc else None
        self.operator.kill(now)
        self.record(now, "operator-sigkill", f"pid {pid}")
        self._restart_operator_later(now)
        return True

    def _operator_sigterm(self, now: float, snap: dict[str, Any]) -> bool:
        if not self.operator.up:
            return False
        pid = self.operator.op.proc.pid if self.operator.op.proc else None
        self.operator.terminate(now)
        self.record(now, "operator-sigterm", f"pid {pid}", "(replaces apiserver-restart on a cluster not ours)")
        self._restart_operator_later(now)
        return True

    def _apiserver_restart(self, now: float, snap: dict[str, Any]) -> bool:
        if not self.operator.up:
            return False
        down = round(self.rng.uniform(*APISERVER_DOWN_SECONDS), 1)
        with open(self.log_dir / "restart.log", "ab") as out:
            proc = subprocess.Popen(
                ["bash", str(helpers.REPO / "tests" / "cluster" / "restart.sh"), "kube-apiserver", f"{down:g}"],
                cwd=helpers.REPO, stdout=out, stderr=subprocess.STDOUT,
            )
        self.blocking = (proc, now, now + down + APISERVER_RESTART_DEADLINE_S, "kube-apiserver restart")
        self.record(now, "apiserver-restart", "kube-apiserver", f"down {down:g}s")
        return True

    def _cjs(self, snap: dict[str, Any], phases: tuple[str, ...]) -> list[dict[str, Any]]:
        return [cj for cj in snap["computejobs"] if (cj.get("status") or {}).get("phase") in phases
                and not invariants.meta(cj).get("deletionTimestamp")
                and invariants.meta(cj).get("name") not in self.recreating]

    def _job_deleted(self, now: float, snap: dict[str, Any]) -> bool:
        by_owner = invariants.workloads_by_owner(snap["jobs"])
        targets = [(cj, by_owner[uid]) for cj in self._cjs(snap, invariants.BOUND_PHASES)
                   if (uid := str(invariants.meta(cj).get("uid"))) in by_owner
                   and not invariants.job_finished(by_owner[uid])
                   and not invariants.meta(by_owner[uid]).get("deletionTimestamp")]
        if not targets:
            return False
        cj, job = self.rng.choice(sorted(targets, key=lambda t: invariants.meta(t[0])["name"]))
        propagation = self.rng.choice(("Foreground", "Background"))
        name = invariants.meta(job)["name"]
        self.api.batch.delete_namespaced_job(name, self.ns, propagation_policy=propagation,
                                             _request_timeout=REQUEST_TIMEOUT_S)
        self.record(now, "job-deleted", f"{self.ns}/{name}",
                    f"({propagation}; ComputeJob {invariants.meta(cj)['name']} was {cj['status'].get('phase')})")
        return True

    def _pods_deleted(self, now: float, snap: dict[str, Any]) -> bool:
        running = {invariants.meta(cj)["name"] for cj in self._cjs(snap, ("Running",))}
        pods: dict[str, list[str]] = {}
        for pod in snap["pods"]:
            m = invariants.meta(pod)
            name = (m.get("labels") or {}).get(invariants.LABEL_JOB)
            if m.get("namespace") == self.ns and name in running and (pod.get("status") or {}).get("phase") == "Running":
                pods.setdefault(name, []).append(m["name"])
        if not pods:
            return False
        name = self.rng.choice(sorted(pods))
        victims = sorted(pods[name]) if self.rng.random() < 0.5 else [self.rng.choice(sorted(pods[name]))]
        for pod in victims:
            self.api.core.delete_namespaced_pod(pod, self.ns, grace_period_seconds=0, _request_timeout=REQUEST_TIMEOUT_S)
        self.record(now, "pods-deleted", f"{self.ns}/{name}", f"{len(victims)} of {len(pods[name])}: {victims}")
        return True

    def _healthy_nodes(self, snap: dict[str, Any]) -> list[str]:
        if len(self.impaired) >= MAX_NODES_IMPAIRED:
            return []
        usable = {invariants.meta(n).get("name") for n in snap["nodes"] if invariants.node_usable(n)}
        return sorted(n for n in self.node_manifests if n in usable and n not in self.impaired)

    def _busy_first(self, snap: dict[str, Any], nodes: list[str]) -> str:
        busy = {(p.get("spec") or {}).get("nodeName") for p in snap["pods"]}
        with_pods = [n for n in nodes if n in busy]
        return self.rng.choice(with_pods if with_pods and self.rng.random() < 0.8 else nodes)

    def _node_deleted(self, now: float, snap: dict[str, Any]) -> bool:
        nodes = self._healthy_nodes(snap)
        if not nodes:
            return False
        node = self._busy_first(snap, nodes)
        on_it = sum(1 for p in snap["pods"] if (p.get("spec") or {}).get("nodeName") == node)
        self.api.core.delete_node(node, _request_timeout=REQUEST_TIMEOUT_S)
        self.impaired.add(node)
        outage = self.rng.uniform(*NODE_OUTAGE_SECONDS)
        self.record(now, "node-deleted", node, f"({on_it} live pods on it; back in {outage:.0f}s)")

        def recreate(t: float) -> bool:
            fake_nodes_module.apply_nodes(self.api.core, [self.node_manifests[node]])
            return True

        self.later(now, outage, "node recreated", node, recreate)
        return True

    def _node_cordoned(self, now: float, snap: dict[str, Any]) -> bool:
        nodes = self._healthy_nodes(snap)
        if not nodes:
            return False
        node = self._busy_first(snap, nodes)
        self.api.core.patch_node(node, {"spec": {"unschedulable": True}}, _request_timeout=REQUEST_TIMEOUT_S)
        self.impaired.add(node)
        outage = self.rng.uniform(*NODE_OUTAGE_SECONDS)
        self.record(now, "node-cordoned", node, f"(uncordoned in {outage:.0f}s)")

        def uncordon(t: float) -> bool:
            if not self.api.node_exists(node):
                return True  # deleted meanwhile: its recreation comes back uncordoned
            self.api.core.patch_node(node, {"spec": {"unschedulable": False}}, _request_timeout=REQUEST_TIMEOUT_S)
            return True

        self.later(now, outage, "node uncordoned", node, uncordon)
        return True

    def _computejob_recreated(self, now: float, snap: dict[str, Any]) -> bool:
        active = self._cjs(snap, invariants.BOUND_PHASES)
        waiting = self._cjs(snap, invariants.WAITING_PHASES)
        pick_from = active if active and (self.rng.random() < 0.7 or not waiting) else waiting
        if not pick_from:
            return False
        name = self.rng.choice(sorted(invariants.meta(cj)["name"] for cj in pick_from))
        current = self.api.get_computejob(self.ns, name)
        if current is None:
            return False
        phase = (current.get("status") or {}).get("phase")
        propagation = self.rng.choice(("Background", "Foreground"))
        self.api.delete_computejob(self.ns, name, propagation)
        self.recreating.add(name)
        doc = fleet.recreatable(current)
        old_uid = invariants.meta(current).get("uid", "")
        self.record(now, "computejob-recreated", f"{self.ns}/{name}", f"(was {phase}, uid {old_uid[:8]}; {propagation})")

        def recreate(t: float) -> bool:
            if self.api.get_computejob(self.ns, name) is not None:
                return False  # still being deleted
            made = self.api.create_computejob(doc)
            self.recreating.discard(name)
            self.log(f"recreated {name}: uid {old_uid[:8]} -> {invariants.meta(made).get('uid', '')[:8]}")
            return True

        self.later(now, 0.0, "computejob recreated", f"{self.ns}/{name}", recreate)
        return True

    def _queued_job_edited(self, now: float, snap: dict[str, Any]) -> bool:
        """A job not bound yet: Queued or Deferred, else one the operator has not written a status for
        (Pending: just submitted)."""
        unbound = ("Pending", *invariants.WAITING_PHASES)
        waiting = [cj for cj in self._cjs(snap, invariants.WAITING_PHASES) if invariants.meta(cj)["name"] not in self.edited]
        waiting = waiting or [cj for cj in snap["computejobs"] if not (cj.get("status") or {}).get("phase")
                              and invariants.meta(cj)["name"] not in self.edited | self.recreating]
        if not waiting:
            return False
        name = self.rng.choice(sorted(invariants.meta(cj)["name"] for cj in waiting))
        current = self.api.get_computejob(self.ns, name)
        if current is None or ((current.get("status") or {}).get("phase") or "Pending") not in unbound:
            return False
        spec = current["spec"]
        if self.rng.random() < 0.5:
            old = spec["accelerators"]["count"]
            new = self.rng.choice([c for c in fleet.COUNTS if c != old])
            change: dict[str, Any] = {"accelerators": {"count": new}}
            what = f"accelerators.count {old} -> {new}"
        else:
            old = spec.get("priority", 0)
            new = self.rng.choice([p for p in (-10, 5, 20, 100) if p != old])
            change, what = {"priority": new}, f"priority {old} -> {new}"
        # The resourceVersion makes it a conditional update: refused (409) if the operator wrote a
        # new status (e.g. bound it) since we read it Queued.
        self.api.patch_computejob(self.ns, name, {"metadata": {"resourceVersion": invariants.meta(current)["resourceVersion"]},
                                                  "spec": change})
        self.edited.add(name)
        phase = (current.get("status") or {}).get("phase") or "Pending"
        self.record(now, "queued-job-edited", f"{self.ns}/{name}", f"({phase}: {what})")
        return True
