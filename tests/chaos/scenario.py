"""The chaos scenario: a fleet, a stream of ComputeJobs, faults, and invariants checked throughout.

    params = scenario.Params.from_env(jobs=300, faults=56, duration_s=1080)
    result = scenario.Scenario(params, kube, namespace, tmp_path).run()
    path = report.write(result)

One thread, one bounded loop (deadline ``duration_s``) that each ``tick_s``: reads a snapshot of the
cluster every ``check_interval_s`` and runs the invariant checks on it (tests/chaos/invariants.py);
submits the next job when fewer than ``max_outstanding`` are unfinished; lets the injector
(tests/chaos/faults.py) inject a fault or bring back what an earlier one took away; and watches
the operator process. Then the recoveries still to come run when due (the rest at once if they take
too long), and the loop waits (deadline
``quiesce_timeout_s``) until the fleet is quiet: every ComputeJob final or waiting, no live pod,
every pool's allocated matching its pods, and all of that unchanged over a resync window. The
end-state check (f) runs last. Nothing sleeps as synchronisation: the loop's pause between ticks
is its polling interval, and every wait is on observed API state with a deadline.

Parameters come from the caller, and the environment may override them: SUANLI_CHAOS_SEED,
SUANLI_CHAOS_JOBS, SUANLI_CHAOS_FAULTS, SUANLI_CHAOS_DURATION_SECONDS. SUANLI_CHAOS_OPERATOR_SRC
names a source root (a folder holding suanli/, e.g. a `git archive` of a commit) the operator is
run from instead of the installed package.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import os
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import yaml
from tests.chaos import faults as faults_mod
from tests.chaos import fleet, invariants
from tests.chaos.kubeapi import Api
from tests.cluster import fake_nodes as fake_nodes_module
from tests.e2e import helpers

DEFAULT_SEED = 20260611
NODE_READY_TIMEOUT_S = 60.0
OPERATOR_READY_TIMEOUT_S = 120.0
RESTORE_TIMEOUT_S = 180.0


def seed_from_env() -> int:
    """SUANLI_CHAOS_SEED, else the fixed default: the same jobs and the same fault rounds each run."""
    return int(os.environ.get("SUANLI_CHAOS_SEED") or DEFAULT_SEED)


@dataclasses.dataclass(frozen=True)
class Params:
    """One chaos run. Times in seconds."""

    seed: int = DEFAULT_SEED
    jobs: int = 40  # ComputeJobs submitted
    faults: int = 8  # faults injected
    duration_s: float = 240.0  # bound on the submit-and-inject phase
    quiesce_timeout_s: float = 180.0  # bound on the wait for quiet afterwards
    check_interval_s: float = 2.5  # between invariant checks
    tick_s: float = 0.3  # the loop's polling interval
    max_outstanding: int = 24  # submitted jobs not final yet, at most
    submit_gap_s: tuple[float, float] = (0.2, 1.2)  # between two submissions (uniform)
    min_fault_gap_s: float = 3.0  # between two faults, at least (then up to twice that)
    resync_s: float = 10.0  # the operator's operator.resync_seconds in this run
    # (d), (e): a batch Job may outlive its ComputeJob, a pod its Job, this long: the garbage collector
    # runs in the controller-manager, which has no leader for ~35 s after an API-server restart.
    gc_grace_s: float = 45.0
    # (b): a lost node's accelerators still count this long: the pod GC deletes a gone node's pods
    # after 40 s, and only then do their Jobs (and the operator) see the replicas lost.
    node_grace_s: float = 60.0
    submit_retry_s: float = 2.0  # after a failed submission (the API away)
    min_kinds: int = 7  # distinct fault kinds the run must inject
    label: str = "chaos"

    @classmethod
    def from_env(cls, **kwargs: Any) -> Params:
        env = {"seed": ("SUANLI_CHAOS_SEED", int), "jobs": ("SUANLI_CHAOS_JOBS", int),
               "faults": ("SUANLI_CHAOS_FAULTS", int), "duration_s": ("SUANLI_CHAOS_DURATION_SECONDS", float)}
        for field, (var, kind) in env.items():
            if os.environ.get(var):
                kwargs[field] = kind(os.environ[var])
        return cls(**kwargs)

    @property
    def bound_s(self) -> float:
        """The longest a run may take, setup and clean-up included."""
        return self.duration_s + self.quiesce_timeout_s + RESTORE_TIMEOUT_S + OPERATOR_READY_TIMEOUT_S + 120


@dataclasses.dataclass
class Result:
    params: Params
    cluster: str  # "local control plane" or the kubeconfig of a cluster not ours
    namespace: str
    operator_source: str
    started_utc: str
    faults: list[faults_mod.FaultRecord]
    substitutions: dict[str, str]
    fault_notes: list[str]
    jobs_submitted: int
    recreated_jobs: int
    phases: dict[str, int]  # final phase -> jobs
    failed_reasons: dict[str, int]  # failure message (shortened) -> jobs
    waiting_but_fits: list[str]
    violations: list[invariants.Violation]
    transient: dict[str, int]
    transient_examples: dict[str, str]
    rules: dict[str, invariants.Rule]
    checks: int
    checks_skipped: int  # the API did not answer (e.g. while it restarted)
    active_seconds: float
    quiesce_seconds: float | None  # None: did not quiesce within the bound
    operator_starts: int
    operator_start_seconds: list[float]
    aborted: str | None
    log_dir: str

    @property
    def fault_counts(self) -> dict[str, int]:
        return dict(collections.Counter(f.kind for f in self.faults))

    @property
    def violations_by_kind(self) -> dict[str, list[invariants.Violation]]:
        out: dict[str, list[invariants.Violation]] = {}
        for v in self.violations:
            out.setdefault(v.kind, []).append(v)
        return out


class Scenario:
    def __init__(self, params: Params, kube: Any, namespace: str, log_dir: Path):
        self.p, self.kube, self.ns, self.log_dir = params, kube, namespace, log_dir
        self.api = Api(kube.kubeconfig)
        self.suffix = f"{params.seed % 100000}-{uuid.uuid4().hex[:4]}"
        self.centers = fleet.centers(self.suffix)
        self.node_manifests = {n["metadata"]["name"]: n for n in fake_nodes_module.nodes_for_centers(self.centers)}
        self.todo = fleet.jobs(params.jobs, namespace, params.seed)
        self.submitted: list[str] = []
        self.submit_failed = ""  # the job whose submission failed last (logged once)
        self.rng = random.Random(f"{params.seed}-faults")
        self.submit_rng = random.Random(f"{params.seed}-arrivals")
        self.rules = invariants.default_rules(params.resync_s, params.gc_grace_s)
        self.tracker = invariants.Tracker(self.rules)
        self.owner_history: dict[str, str] = {}
        self.ready_seen: dict[str, tuple[float, dict[str, Any]]] = {}  # node -> (last seen Ready, the node)
        self.checks = self.checks_skipped = 0
        self.snap: dict[str, Any] | None = None
        self.t0 = time.monotonic()
        self.started_utc = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.log_file = log_dir / "chaos.log"
        source = os.environ.get("SUANLI_CHAOS_OPERATOR_SRC")
        assert not source or (Path(source) / "suanli" / "__init__.py").is_file(), (
            f"SUANLI_CHAOS_OPERATOR_SRC={source} holds no suanli/ package: the operator would silently run "
            "from the installed one instead")
        self.operator_source = source or "the installed package (the working tree's operator/)"
        config = log_dir / "chaos-operator.yaml"
        config.write_text(yaml.safe_dump({"operator": {"resync_seconds": params.resync_s}}))
        # SUANLI_CHAOS_OPERATOR_ARGS: more `suanli run` arguments (e.g. --verbose, to see each binding).
        extra = os.environ.get("SUANLI_CHAOS_OPERATOR_ARGS", "").split()
        op = helpers.Operator(kube.kubeconfig, log_dir, ["--config", str(config), *extra],
                              env={"PYTHONPATH": source} if source else None)
        self.operator = faults_mod.OperatorControl(op)
        self.injector = faults_mod.Injector(
            self.api, self.operator, self.rng, namespace=namespace, total_faults=params.faults, total_jobs=params.jobs,
            min_gap_s=params.min_fault_gap_s, local=kube.is_local, node_manifests=self.node_manifests,
            log_dir=log_dir, log=self.log,
        )

    def now(self) -> float:
        return time.monotonic() - self.t0

    def log(self, text: str) -> None:
        with open(self.log_file, "a") as out:
            out.write(f"{datetime.datetime.now(datetime.UTC).strftime('%H:%M:%S.%f')[:-3]} {text}\n")

    # --- setup and clean-up -----------------------------------------------------------

    def setup(self) -> None:
        fake_nodes_module.apply_nodes(self.api.core, self.node_manifests.values())

        def fleet_usable() -> bool:
            usable = {n["metadata"]["name"] for n in self.api.list_nodes() if invariants.node_usable(n)}
            return set(self.node_manifests) <= usable

        helpers.wait_for_value(fleet_usable, NODE_READY_TIMEOUT_S, "the chaos fleet's kwok nodes to be Ready")
        for doc in self.centers:
            helpers.delete_centers(self.api.custom, [doc["metadata"]["name"]])
            self.api.custom.create_cluster_custom_object(helpers.GROUP, helpers.VERSION, "computecenters", doc)
        self.operator.start(self.now())
        self.wait_operator_up(OPERATOR_READY_TIMEOUT_S)
        self.log(f"setup done: centers {[c['metadata']['name'] for c in self.centers]}, {len(self.node_manifests)} nodes")

    def wait_operator_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.operator.up and time.monotonic() < deadline:
            self.watch_operator()
            if self.operator.state == "down":
                break
            time.sleep(self.p.tick_s)
        assert self.operator.up, f"the operator did not become healthy within {timeout:g}s:\n{self.operator.op.log_tail()}"

    def clean_up(self) -> None:
        names = [c["metadata"]["name"] for c in self.centers]
        helpers.delete_centers(self.api.custom, names)
        self.operator.op.stop()
        helpers.release_finalizers(self.api.custom, self.ns, names)
        for node in self.node_manifests:
            for pod in self.api.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items:
                try:
                    self.api.core.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0)
                except Exception as exc:
                    self.log(f"clean-up: pod {pod.metadata.name}: {exc!r:.200}")
        fake_nodes_module.delete_nodes(self.api.core, list(self.node_manifests))

    # --- the pieces of a tick ---------------------------------------------------------

    def watch_operator(self) -> None:
        message = self.operator.poll(self.now())
        if message:
            self.log(message)
            self.tracker.observe(self.now(), [invariants.Finding(
                "operator-exited", (len(self.operator.unexpected_exits),), message, immediate=True)])

    def check(self) -> dict[str, Any] | None:
        """Read a snapshot and run (a)-(e) on it; None if the API did not answer."""
        try:
            snap = self.api.snapshot(self.ns)
        except Exception as exc:
            self.checks_skipped += 1
            self.log(f"check skipped (the API did not answer): {exc!r:.200}")
            return None
        now = self.now()
        self.checks += 1
        ready = {n["metadata"]["name"] for n in snap["nodes"] if invariants.node_ready(n)}
        self.ready_seen.update({n["metadata"]["name"]: (now, n) for n in snap["nodes"] if n["metadata"]["name"] in ready})
        lost = [n for name, (seen, n) in self.ready_seen.items() if name not in ready and now - seen <= self.p.node_grace_s]
        findings = invariants.check_all(snap, self.owner_history, lost)
        self.owner_history.update(invariants.job_owner_map(snap["jobs"]))
        for v in self.tracker.observe(now, findings):
            self.log(f"VIOLATION {v.kind}: {v.detail}")
        phases = collections.Counter((cj.get("status") or {}).get("phase") or "Pending" for cj in snap["computejobs"])
        self.log(f"check {self.checks} t={now:.1f}s ({snap['read_seconds']:.2f}s to read): {dict(sorted(phases.items()))}, "
                 f"{len(findings)} findings")
        self.snap = snap
        return snap

    def outstanding(self) -> int:
        if self.snap is None:
            return len(self.submitted)
        final = sum(1 for cj in self.snap["computejobs"] if (cj.get("status") or {}).get("phase") in helpers.FINAL)
        return len(self.submitted) - final

    def submit(self) -> bool:
        doc = self.todo[len(self.submitted)]
        try:
            self.api.create_computejob(doc)
        except Exception as exc:
            from kubernetes.client.exceptions import ApiException

            if not (isinstance(exc, ApiException) and exc.status == 409):  # made before a lost answer
                if self.submit_failed != doc["metadata"]["name"]:
                    self.log(f"submit {doc['metadata']['name']} failed for now (retrying every "
                             f"{self.p.submit_retry_s:g}s): {exc!r:.200}")
                self.submit_failed = doc["metadata"]["name"]
                return False
        self.submitted.append(doc["metadata"]["name"])
        return True

    # --- the run ----------------------------------------------------------------------

    def run(self) -> Result:
        quiet = logging.getLogger("urllib3.connectionpool")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # its retry warnings while the API server restarts drown the log
        self.setup()
        try:
            active = self.active_phase()
            self.restore()
            quiesce = self.quiesce(since=active)
            final = self.check() or self.snap
            if final is not None:
                for v in self.tracker.observe(self.now(), invariants.check_final(final["computejobs"], final["jobs"], final["pods"])):
                    self.log(f"VIOLATION {v.kind}: {v.detail}")
            return self.result(active, quiesce, final)
        finally:
            self.clean_up()
            quiet.setLevel(level)

    def active_phase(self) -> float:
        """Submit every job and inject every fault, checking throughout (deadline duration_s)."""
        deadline = self.p.duration_s
        next_check = next_submit = 0.0
        while self.now() < deadline and not self.injector.aborted:
            now = self.now()
            self.watch_operator()
            if now >= next_check:
                self.check()
                next_check = now + self.p.check_interval_s
            if len(self.submitted) < len(self.todo) and now >= next_submit and self.outstanding() < self.p.max_outstanding:
                gap = self.submit_rng.uniform(*self.p.submit_gap_s) if self.submit() else self.p.submit_retry_s
                next_submit = self.now() + gap
            self.injector.step(self.now(), self.snap, len(self.submitted))
            if len(self.submitted) == len(self.todo) and self.injector.done:
                break
            time.sleep(self.p.tick_s)
        self.log(f"active phase over at t={self.now():.1f}s: {len(self.submitted)} jobs, "
                 f"{len(self.injector.records)} faults{f', aborted: {self.injector.aborted}' if self.injector.aborted else ''}")
        return self.now()

    def restore(self) -> None:
        """Every recovery still to come, when due (nodes back, uncordoned, jobs recreated, the API
        server and the operator up), checking meanwhile; past RESTORE_TIMEOUT_S / 2 the rest at once
        (deadline RESTORE_TIMEOUT_S)."""
        deadline = self.now() + RESTORE_TIMEOUT_S
        next_check = 0.0
        while (self.injector.restoring or not self.operator.up) and self.now() < deadline:
            self.injector.restore(self.now(), force=deadline - self.now() < RESTORE_TIMEOUT_S / 2)
            self.watch_operator()
            if self.operator.state == "down" and not self.injector.restoring:
                self.operator.start(self.now())
            if self.now() >= next_check:
                self.check()
                next_check = self.now() + self.p.check_interval_s
            time.sleep(self.p.tick_s)
        if self.injector.restoring or not self.operator.up:
            self.injector.notes.append(f"restore incomplete after {RESTORE_TIMEOUT_S:g}s: "
                                       f"{[(r.what, r.target) for r in self.injector.recoveries]}, operator {self.operator.state}")
        self.log(f"restored at t={self.now():.1f}s")

    def quiet(self, snap: dict[str, Any]) -> bool:
        ours = [cj for cj in snap["computejobs"]]
        settled = all((cj.get("status") or {}).get("phase") in (*helpers.FINAL, *invariants.WAITING_PHASES) for cj in ours)
        live = [p for p in snap["pods"] if invariants.meta(p).get("namespace") == self.ns]
        mismatched = [f for f in invariants.check_allocation(snap["centers"], snap["nodes"], snap["pods"])
                      if f.key[0] in {c["metadata"]["name"] for c in self.centers}]
        return settled and not live and not mismatched and len(ours) >= len(self.submitted) - len(self.injector.recreating)

    def quiesce(self, since: float) -> float | None:
        """Seconds from ``since`` (the last submission or fault) until the fleet was quiet, quiet
        having held over a resync window (deadline: quiesce_timeout_s from now), or None."""
        start = since
        deadline = self.now() + self.p.quiesce_timeout_s
        window = self.p.resync_s + 5
        quiet_since: float | None = None
        while self.now() < deadline:
            self.watch_operator()
            snap = self.check()
            if snap is not None:
                if self.quiet(snap):
                    quiet_since = self.now() if quiet_since is None else quiet_since
                    if self.now() - quiet_since >= window:
                        self.log(f"quiet since t={quiet_since:.1f}s")
                        return quiet_since - start
                else:
                    quiet_since = None
            time.sleep(self.p.check_interval_s)
        self.log(f"did not quiesce within {self.p.quiesce_timeout_s:g}s")
        return None

    def result(self, active: float, quiesce: float | None, snap: dict[str, Any] | None) -> Result:
        cjs = snap["computejobs"] if snap else []
        phases = collections.Counter((cj.get("status") or {}).get("phase") or "Pending" for cj in cjs)
        reasons = collections.Counter(
            _shorten((cj.get("status") or {}).get("message") or "") for cj in cjs
            if (cj.get("status") or {}).get("phase") == "Failed")
        fits = invariants.waiting_but_fits(cjs, snap["centers"], snap["nodes"], snap["pods"]) if snap else []
        return Result(
            params=self.p,
            cluster="local control plane" if self.kube.is_local else f"KUBECONFIG {self.kube.kubeconfig}",
            namespace=self.ns,
            operator_source=self.operator_source,
            started_utc=self.started_utc,
            faults=list(self.injector.records),
            substitutions={} if self.kube.is_local else dict(faults_mod.SUBSTITUTES),
            fault_notes=list(self.injector.notes),
            jobs_submitted=len(self.submitted),
            recreated_jobs=sum(1 for f in self.injector.records if f.kind == "computejob-recreated"),
            phases=dict(phases),
            failed_reasons=dict(reasons.most_common()),
            waiting_but_fits=fits,
            violations=sorted(self.tracker.violations, key=lambda v: (v.kind, v.first_seen)),
            transient=dict(self.tracker.transient),
            transient_examples=dict(self.tracker.transient_examples),
            rules=self.rules,
            checks=self.checks,
            checks_skipped=self.checks_skipped,
            active_seconds=active,
            quiesce_seconds=quiesce,
            operator_starts=self.operator.op.starts,
            operator_start_seconds=list(self.operator.start_seconds),
            aborted=self.injector.aborted,
            log_dir=str(self.log_dir),
        )


def _shorten(message: str, limit: int = 110) -> str:
    """A failure message with the job's and pod's names generalised (so equal reasons group), cut to
    ``limit`` characters."""
    text = " ".join(message.split())
    text = re.sub(r"\bcj-c\d+-\d+-[a-z0-9]{5}\b", "<pod>", text)
    text = re.sub(r"\bcj-c\d+\b", "<job>", text)
    text = re.sub(r"\bc\d{3,}\b", "<cj>", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
