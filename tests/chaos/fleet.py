"""The chaos suite's fleet and workload, built from a seed: pure builders, plain dicts.

Two ComputeCenters (``chaos-a-<suffix>`` with two GPU pools, ``chaos-b-<suffix>`` with one), each
pool ``NODES_PER_POOL`` kwok nodes of ``ACCELERATORS_PER_NODE`` accelerators; ComputeJobs of mixed
gang shapes (replicas 1-3 x count 1/2/4/8, a few priorities) whose kwok pods complete after a few
seconds with jitter (the ``pod-complete.stage.kwok.x-k8s.io`` annotations of the local cluster,
tests/cluster/README.md). The same seed gives the same fleet and the same jobs in the same order.
"""

from __future__ import annotations

import random
from typing import Any

GROUP, VERSION = "suanli.io", "v1alpha1"
NODES_PER_POOL = 4
ACCELERATORS_PER_NODE = 8
REPLICAS = (1, 1, 1, 2, 2, 3)  # weights: most jobs are single pods, some gangs of 2-3
COUNTS = (1, 2, 4, 8)
PRIORITIES = (0, 0, 0, 0, 10, 50)
RUNTIME_SECONDS = (4, 10)  # kwok `delay`: a pod completes after delay + random(0, jitter - delay)
JITTER_SECONDS = (2, 8)
COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
COMPLETE_JITTER = "pod-complete.stage.kwok.x-k8s.io/jitter-delay"

# (center prefix, region, grid gCO2e/kWh, [(pool, model)])
CENTERS = (
    ("chaos-a", "cn-beijing", 600, [("a100", "A100"), ("h100", "H100")]),
    ("chaos-b", "cn-guizhou", 300, [("a100", "A100")]),
)


def centers(suffix: str) -> list[dict[str, Any]]:
    """The fleet's ComputeCenters; each pool's nodes carry the label suanli.io/pool=<center>-<pool>."""
    out = []
    for prefix, region, grams, pool_list in CENTERS:
        name = f"{prefix}-{suffix}"
        out.append({
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ComputeCenter",
            "metadata": {"name": name},
            "spec": {
                "region": region,
                "energy": {"timeZone": "Asia/Shanghai", "pue": 1.2, "carbonIntensity": {"gramsPerKWh": grams}},
                "pools": [{
                    "name": pool, "acceleratorType": "GPU", "model": model, "resourceName": "nvidia.com/gpu",
                    "nodeSelector": {"suanli.io/pool": f"{name}-{pool}"},
                    "expected": {"nodes": NODES_PER_POOL, "acceleratorsPerNode": ACCELERATORS_PER_NODE},
                } for pool, model in pool_list],
            },
        })
    return out


def capacity() -> int:
    """Accelerators in the whole fleet."""
    return sum(len(pools) for *_, pools in CENTERS) * NODES_PER_POOL * ACCELERATORS_PER_NODE


def job(name: str, namespace: str, rng: random.Random) -> dict[str, Any]:
    """A ComputeJob of a random gang shape, priority and (short) runtime."""
    delay = rng.randint(*RUNTIME_SECONDS)
    jitter = delay + rng.randint(*JITTER_SECONDS)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ComputeJob",
        "metadata": {"name": name, "namespace": namespace, "labels": {"suanli.io/chaos": "true"}},
        "spec": {
            "replicas": rng.choice(REPLICAS),
            "accelerators": {"count": rng.choice(COUNTS), "types": ["GPU"]},
            "images": {"GPU": "registry.example.com/train:cuda12"},
            "priority": rng.choice(PRIORITIES),
            "template": {
                "metadata": {"annotations": {COMPLETE_DELAY: f"{delay}s", COMPLETE_JITTER: f"{jitter}s"}},
                "spec": {"containers": [{"name": "main", "command": ["train"]}], "restartPolicy": "Never"},
            },
            "runtime": {"estimatedDuration": "1h"},
        },
    }


def jobs(count: int, namespace: str, seed: int) -> list[dict[str, Any]]:
    """``count`` ComputeJobs named c000, c001, ... (the same for the same seed)."""
    rng = random.Random(f"{seed}-jobs")
    return [job(f"c{i:03d}", namespace, rng) for i in range(count)]


def recreatable(cj: dict[str, Any]) -> dict[str, Any]:
    """A ComputeJob as read from the API, reduced to what creating it again needs (same name and
    spec, no uid, status or server fields)."""
    m = cj.get("metadata") or {}
    return {
        "apiVersion": cj.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": "ComputeJob",
        "metadata": {k: m[k] for k in ("name", "namespace", "labels", "annotations") if m.get(k)},
        "spec": cj["spec"],
    }
