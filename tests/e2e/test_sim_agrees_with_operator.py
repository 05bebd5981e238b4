"""One brain, two bodies: the simulator and the operator bind the same jobs to the same pools.

A small fleet of two centers (own regions, so no other test's centers can take the jobs; constant
carbon and price, no budget, no deadline, so the hour does not matter) runs eight jobs of distinct
shapes, all on the balanced profile (the simulator gives every job its policy's weights), with
distinct priorities. Some compete for the same pool and the loser goes elsewhere (etl's data is in
the west, whose A100 node finetune took first); two wait for gangs to finish (big-gpu, late-npu).
The waiting ones can use only one pool each, so which job finishes first — hours apart in the
simulator, all after the same kwok delay here — cannot change where they go. The simulator's capacity is `expected.nodes`, the operator's the fake nodes: they
are equal. The jobs are created in queue order (highest priority first) once the operator has
seen every node, so whether it plans them one by one or in a batch, the order is the simulator's.

`suanli simulate -o json` reports per-policy totals only, so the simulator is driven the way the
command does it (`commands.simulate.load` + `simulate`) and the per-job records of the run are read.
The jobs the simulator made wait are exactly the ones the operator reported Queued.

Run it on a cluster no other operator test uses at the same time: an operator watches every
namespace, so another test's operator (or its unconstrained jobs) would take part in this fleet.
"""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e import helpers
from tests.e2e.helpers import EXPECT_TIMEOUT_S, GROUP, VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(600)]

# Long enough that no first-round job finishes before every job was created and planned.
RUN_DELAY = "15s"
TOLERATE = {
    "nvidia.com/gpu": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "huawei.com/Ascend910": [{"key": "huawei.com/Ascend910", "operator": "Exists", "effect": "NoSchedule"}],
}


def _pool(center: str, name: str, kind: str, model: str, resource: str, nodes: int) -> dict[str, Any]:
    return {
        "name": name, "acceleratorType": kind, "model": model, "resourceName": resource,
        "nodeSelector": {"suanli.io/pool": f"{center}-{name}"}, "tolerations": TOLERATE[resource],
        "expected": {"nodes": nodes, "acceleratorsPerNode": 8},
    }


def fleet(suffix: str) -> list[dict[str, Any]]:
    east, west = f"sim-east-{suffix}", f"sim-west-{suffix}"
    r_east, r_west = f"e2e-{suffix}-east", f"e2e-{suffix}-west"

    def center(name: str, region: str, other: str, grams: float, price: float, pue: float, pools: list) -> dict:
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeCenter", "metadata": {"name": name},
            "spec": {
                "region": region,
                "network": {"defaultBandwidthGbps": 5, "links": [{"region": other, "bandwidthGbps": 20, "latencyMs": 30}]},
                "energy": {"timeZone": "Asia/Shanghai", "pue": pue, "carbonIntensity": {"gramsPerKWh": grams},
                           "pricePerKWh": {"value": price}},
                "pools": pools,
            },
        }

    return [
        center(east, r_east, r_west, 600.0, 0.5, 1.3, [
            _pool(east, "h100", "GPU", "H100", "nvidia.com/gpu", 2),
            _pool(east, "a100", "GPU", "A100", "nvidia.com/gpu", 2),
        ]),
        center(west, r_west, r_east, 150.0, 0.35, 1.15, [
            _pool(west, "ascend-910b", "NPU", "Ascend910B", "huawei.com/Ascend910", 2),
            _pool(west, "a100", "GPU", "A100", "nvidia.com/gpu", 1),
        ]),
    ]


def jobs(namespace: str, suffix: str) -> list[dict[str, Any]]:
    """Eight jobs in queue order (priority 100 down to 30)."""
    r_east, r_west = f"e2e-{suffix}-east", f"e2e-{suffix}-west"
    both = [r_east, r_west]
    rows = [
        # name, replicas, count, types, models, precision, region, GiB, runtime
        ("pretrain", 2, 8, ["GPU", "NPU"], [], "bf16", r_east, 2000, "6h"),
        ("finetune", 1, 8, ["GPU"], [], "bf16", r_west, 500, "2h"),
        ("eval", 1, 8, ["GPU"], ["A100"], "fp16", r_east, 50, "30m"),
        ("npu-train", 1, 8, ["NPU"], [], "fp16", r_west, 200, "3h"),
        ("infer", 1, 2, ["GPU"], [], "fp16", r_east, 10, "20m"),
        ("big-gpu", 2, 8, ["GPU"], ["A100"], "fp16", r_east, 100, "1h"),
        ("etl", 1, 4, ["GPU"], ["A100"], "fp32", r_west, 800, "1h"),
        ("late-npu", 2, 8, ["NPU"], ["Ascend910B"], "fp16", r_west, 100, "1h"),
    ]
    out = []
    for priority, (name, replicas, count, types, models, precision, region, gib, runtime) in zip(
        range(100, 0, -10), rows, strict=False
    ):
        accelerators: dict[str, Any] = {"count": count, "types": types, "precision": precision}
        if models:
            accelerators["models"] = models
        out.append({
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ComputeJob",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"suanli.io/arrival": "0"}},
            "spec": {
                "replicas": replicas,
                "accelerators": accelerators,
                "images": {t: f"registry.example.com/{name}:{t.lower()}" for t in types},
                "template": {
                    "metadata": {"annotations": {"pod-complete.stage.kwok.x-k8s.io/delay": RUN_DELAY,
                                                 "pod-complete.stage.kwok.x-k8s.io/jitter-delay": RUN_DELAY}},
                    "spec": {"containers": [{"name": "main", "command": [name]}], "restartPolicy": "Never"},
                },
                "runtime": {"estimatedDuration": runtime, "referenceModel": "A100"},
                "data": {"region": region, "sizeGiB": gib, "allowedRegions": both},
                "priority": priority,
                "policy": {"profile": "balanced"},
            },
        })
    return out


def simulated(centers: list[dict[str, Any]], job_docs: list[dict[str, Any]], tmp: Path) -> dict[str, dict[str, Any]]:
    """name -> {center, pool, waitedSeconds, outcome} from a `balanced` replay starting now."""
    from suanli.commands import simulate as simulate_cmd

    (tmp / "centers.yaml").write_text(yaml.safe_dump_all(centers))
    (tmp / "trace.yaml").write_text(yaml.safe_dump_all(job_docs))
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    sim_fleet, trace, _ = simulate_cmd.load([str(tmp / "centers.yaml")], [str(tmp / "trace.yaml")], "computejobs", [f"start={start}"])
    assert all(p.expected_nodes * p.accelerators_per_node > 0 for p in sim_fleet.pools)
    _, runs = simulate_cmd.simulate(sim_fleet, trace, ["balanced"])
    out = {}
    for record in runs[0].records:
        job = trace.jobs[record.index]
        pool = sim_fleet.pools[record.pool].pool if record.pool >= 0 else None
        out[job.name] = {"center": record.center or None, "pool": pool, "outcome": record.outcome,
                         "waitedSeconds": record.start - record.arrival}
    return out


def test_simulator_and_operator_bind_the_same_jobs_to_the_same_pools(
    kube, namespace, custom_objects, fake_nodes, wait_for, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:5]
    centers, job_docs = fleet(suffix), jobs(namespace, suffix)
    expected = simulated(centers, job_docs, tmp_path)
    assert all(e["outcome"] == "completed" for e in expected.values()), expected
    assert len({e["center"] for e in expected.values()}) == 2, f"the scenario should use both centers: {expected}"
    assert any(e["waitedSeconds"] > 0 for e in expected.values()), f"some job should wait for capacity: {expected}"

    fake_nodes(centers, nodes_per_pool=None)  # expected.nodes per pool: the simulator's capacity
    names = [c["metadata"]["name"] for c in centers]
    op = helpers.Operator(kube.kubeconfig, tmp_path, ["--namespace", namespace])
    op.start()
    try:
        for doc in centers:
            custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)

        def every_node_seen() -> bool:
            for doc in centers:
                live = helpers.get_center(custom_objects, doc["metadata"]["name"])
                pools = {p["name"]: p for p in (live.get("status") or {}).get("pools") or []}
                for pool in doc["spec"]["pools"]:
                    if (pools.get(pool["name"]) or {}).get("readyNodes") != pool["expected"]["nodes"]:
                        return False
            return True

        wait_for(every_node_seen, EXPECT_TIMEOUT_S, "the operator to count every fake node")
        for doc in job_docs:  # queue order
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)

        queued: set[str] = set()

        def all_done() -> bool:
            phases = helpers.job_phases(custom_objects, namespace)
            queued.update(n for n, p in phases.items() if p == "Queued")
            return len(phases) == len(job_docs) and set(phases.values()) == {"Succeeded"}

        wait_for(all_done, EXPECT_TIMEOUT_S, lambda: helpers.job_phases(custom_objects, namespace),
                 what="every job to succeed", interval=0.1, max_interval=0.5)
        got = {}
        for doc in job_docs:
            name = doc["metadata"]["name"]
            binding = helpers.get_job(custom_objects, namespace, name)["status"]["binding"]
            got[name] = (binding["center"], binding["pool"])
        want = {name: (e["center"], e["pool"]) for name, e in expected.items()}
        table = "\n".join(f"  {n:10} sim {want[n][0]}/{want[n][1]:12} operator {got[n][0]}/{got[n][1]}" for n in want)
        assert got == want, f"the simulator and the operator disagree:\n{table}"
        waited = {n for n, e in expected.items() if e["waitedSeconds"] > 0}
        assert queued == waited, f"Queued in the operator: {sorted(queued)}; waited in the simulator: {sorted(waited)}"
        print(f"\nsimulator == operator:\n{table}")
    finally:
        helpers.stop_and_clean_up(op, custom_objects, namespace, names)
