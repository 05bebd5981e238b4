"""The examples in crds/examples/ are valid, cover the API, and land where their comments say.

Every ComputeJob document carries a machine-readable line `# expect: <center>/<pool>`,
`# expect: Queued` or `# expect: Deferred` and a sentence saying why; `suanli plan` on the
whole folder at the instant the examples are written for (NOW) must agree with each.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import re
import subprocess
import sys
from typing import Any

import yaml

from suanli.api import manifests, objects

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "crds" / "examples"
# 23:30 in China: night, so Zhongwei's midday solar window lies ahead (see jobs.yaml).
NOW = "2026-06-01T15:30:00Z"
EXPECT = re.compile(r"^# expect: (?P<what>\S+)\s*$", re.MULTILINE)


@dataclasses.dataclass(frozen=True)
class Expectation:
    namespace: str
    name: str
    what: str  # "<center>/<pool>", "Queued" or "Deferred"
    why: str
    source: str


def _documents(path: pathlib.Path) -> list[str]:
    return re.split(r"^---\s*$", path.read_text(encoding="utf-8"), flags=re.MULTILINE)


def load_expectations() -> list[Expectation]:
    out = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for text in _documents(path):
            doc = yaml.safe_load(text)
            if not isinstance(doc, dict) or doc.get("kind") != "ComputeJob":
                continue
            meta = doc["metadata"]
            where = f"{path.name}: ComputeJob {meta.get('namespace')}/{meta['name']}"
            found = EXPECT.findall(text)
            assert len(found) == 1, f"{where}: needs exactly one `# expect:` line, found {len(found)}"
            comments = [
                line[2:].strip()
                for line in text.splitlines()
                if line.startswith("# ") and not line.startswith("# expect:")
            ]
            assert comments, f"{where}: say in a comment why the job lands where it does"
            out.append(
                Expectation(
                    meta.get("namespace", "default"), meta["name"], found[0], " ".join(comments), where
                )
            )
    return out


def load_examples() -> manifests.Manifests:
    parsed = manifests.Manifests()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        parsed.extend(manifests.parse_text(path.read_text(encoding="utf-8"), str(path)))
    return parsed


def test_examples_parse_and_make_a_realistic_fleet() -> None:
    parsed = load_examples()
    assert len(parsed.centers) >= 5
    assert len(parsed.jobs) >= 8
    types = {pool.accelerator_type for c in parsed.centers for pool in c.spec.pools}
    assert types == {"GPU", "NPU", "DCU", "MLU"}
    assert len({c.spec.region for c in parsed.centers}) == len(parsed.centers), "one center per region"
    assert any(c.spec.energy.carbon_intensity.schedule for c in parsed.centers), "a day/night carbon schedule"
    assert all(c.spec.energy.budget is not None for c in parsed.centers)
    assert any(c.spec.network.links for c in parsed.centers)


def test_pools_follow_the_node_selector_convention() -> None:
    for center in load_examples().centers:
        for pool in center.spec.pools:
            assert pool.node_selector.get("suanli.io/pool") == f"{center.name}-{pool.name}", (
                center.name,
                pool.name,
            )
            assert pool.tolerations, (
                f"{center.name}/{pool.name}: accelerator nodes are tainted; add a toleration"
            )


def test_jobs_exercise_the_whole_api() -> None:
    jobs = [j.spec for j in load_examples().jobs]
    assert {j.policy.profile for j in jobs} == {"balanced", "green", "fast", "local"}
    assert any(j.replicas > 1 for j in jobs), "a gang"
    assert any(j.data.allowed_regions for j in jobs), "data residency"
    assert any(j.energy.max_k_wh for j in jobs) and any(j.energy.max_carbon_kg for j in jobs), "energy caps"
    assert any(j.schedule.deadline for j in jobs), "a deadline"
    assert any(j.accelerators.models for j in jobs), "a model allow-list"
    assert any(j.policy.weights for j in jobs), "custom weights"
    assert len({j.accelerators.precision for j in jobs}) >= 4, "several precisions"
    assert len({j.metadata.namespace for j in load_examples().jobs}) >= 2, "several namespaces"


def test_examples_hold_no_crds() -> None:
    """`kubectl apply -f crds/examples/` must work after the CRDs are installed, and not install them."""
    for path in (p for p in EXAMPLES.glob("*") if p.is_file()):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert not (isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"), path


def test_every_job_states_its_expectation() -> None:
    expectations = load_expectations()
    jobs = {j.key for j in load_examples().jobs}
    assert {(e.namespace, e.name) for e in expectations} == jobs
    centers = {c.name: {p.name for p in c.spec.pools} for c in load_examples().centers}
    phases = set()
    for e in expectations:
        if "/" in e.what:
            center, pool = e.what.split("/", 1)
            assert pool in centers.get(center, set()), f"{e.source}: no pool {e.what} in the examples"
            phases.add("Bound")
        else:
            assert e.what in {"Queued", "Deferred"}, f"{e.source}: expect <center>/<pool>, Queued or Deferred"
            phases.add(e.what)
    assert phases == {"Bound", "Queued", "Deferred"}


def _suanli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process, as a user would (no state shared with the test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from suanli import cli; sys.exit(cli.main(sys.argv[1:]))", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


@functools.cache
def _plan(now: str = NOW) -> dict[tuple[str, str], dict[str, Any]]:
    proc = _suanli("plan", "-f", str(EXAMPLES), "-o", "json", "--now", now)
    assert proc.returncode == 0, f"suanli plan failed (exit {proc.returncode}): {proc.stderr}"
    return {(j["namespace"], j["name"]): j for j in json.loads(proc.stdout)["jobs"]}


def test_plan_lands_every_job_where_its_comment_says() -> None:
    planned = _plan()
    wrong = []
    for e in load_expectations():
        job = planned[(e.namespace, e.name)]
        got = _landing(job)
        if got != e.what:
            wrong.append(f"{e.source}: expected {e.what}, planned {got}: {job['message']}")
    assert not wrong, "\n".join(wrong)


def _landing(job: dict[str, Any]) -> str:
    binding = job.get("binding") or {}
    return f"{binding['center']}/{binding['pool']}" if job["phase"] == "Bound" else str(job["phase"])


def test_inside_the_solar_window_the_deferred_job_starts_at_once() -> None:
    """The deferral is the solar window's doing: at 10:30 in China the job fits in the window
    and binds where it would have waited to, and every other job lands as at night."""
    night, morning = _plan(), _plan("2026-06-02T02:30:00Z")
    for e in load_expectations():
        key = (e.namespace, e.name)
        if e.what == "Deferred":
            assert _landing(morning[key]) == _landing({**night[key], "phase": "Bound"}), morning[key][
                "message"
            ]
        else:
            assert _landing(morning[key]) == e.what, f"{e.source}: {morning[key]['message']}"


def test_queued_and_deferred_jobs_say_why() -> None:
    for job in _plan().values():
        if job["phase"] == "Queued":
            assert job["rejected"] and all(r["reason"] for r in job["rejected"]), job["name"]
        if job["phase"] in {"Queued", "Deferred"}:
            assert job["message"], job["name"]


def test_example_objects_are_models() -> None:
    """Guard against a kind slipping through unparsed (e.g. a typo in `kind`)."""
    kinds = set()
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                kinds.add(doc["kind"])
    assert kinds <= {"Namespace", *manifests.KINDS}, kinds
    assert {objects.ComputeCenter, objects.ComputeJob, objects.ComputeQueue} == set(manifests.KINDS.values())


def test_the_tenants_example_admits_up_to_quota_borrows_and_follows_its_carbon_budget() -> None:
    """crds/examples/tenants.yaml: the reasons name the queue, the dimension, the need and what is left;
    the queue report says who borrowed from whom."""
    proc = _suanli("plan", "-f", str(EXAMPLES), "-o", "json", "--now", NOW)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jobs = {(j["namespace"], j["name"]): j for j in doc["jobs"]}
    assert {jobs[("vision", n)]["queue"] for n in ("detector-a", "detector-b", "detector-c")} == {"vision"}
    waiting = jobs[("vision", "detector-c")]["message"]
    assert waiting.startswith("waiting for its ComputeQueue: queue vision accelerators/GPU: job needs 8, 0 left "
                              "(nominal 16, borrowing up to 8 from cohort research)"), waiting
    carbon = re.fullmatch(r"waiting for its ComputeQueue: queue climate carbon budget: job needs ([0-9.]+) kg, "
                          r"([0-9.]+) kg left in Month 2026-06; all pools: .*", jobs[("climate", "reanalysis")]["message"])
    assert carbon and float(carbon[1]) > float(carbon[2]), jobs[("climate", "reanalysis")]["message"]
    # regrid's data is in Gui'an, where its carbon would overrun the budget: it went to Ya'an's hydro power.
    near = next(r for r in jobs[("climate", "regrid")]["rejected"] if r["center"] == "guian-ai")
    assert near["reason"].startswith("queue climate carbon budget: job needs "), near
    queues = {q["name"]: {d["name"]: d for d in q["dimensions"]} for q in doc["queues"]}
    assert queues["vision"]["accelerators/GPU"]["used"] == 24 and queues["vision"]["accelerators/GPU"]["borrowed"] == 8
    assert queues["speech"]["accelerators/GPU"]["lent"] == 8 and queues["speech"]["accelerators/GPU"]["used"] == 0
    assert queues["climate"]["carbonKg"]["used"] <= 60
