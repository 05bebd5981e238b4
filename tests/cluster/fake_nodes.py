"""Fake accelerator nodes (run by kwok) for the pools of ComputeCenter manifests.

Each pool of a ``suanli.io/v1alpha1`` ComputeCenter becomes ``expected.nodes`` Nodes
(or ``--nodes-per-pool``) named ``<center>-<pool>-<i>``, annotated
``kwok.x-k8s.io/node: fake`` so the local cluster's kwok plays their kubelet, labelled
with the pool's ``nodeSelector`` plus ``suanli.io/center``, ``suanli.io/pool`` and
``type: kwok``, tainted so that exactly the pool's tolerations let pods in, and with
``<resourceName>: <acceleratorsPerNode>`` next to cpu, memory and pods capacity.

A pool declared with ``deviceClassName`` (Dynamic Resource Allocation) gets no extended
resource: its nodes publish their accelerators as a DRA driver would, one ResourceSlice per
node (owned by the Node, so it goes with it) with ``acceleratorsPerNode`` devices of a driver
named like the class (as NVIDIA's ``gpu.nvidia.com`` is), attributes ``model`` and ``type`` and,
when the pool gives ``memoryGiB``, capacity ``memory``; the DeviceClass selecting that driver is
made if the cluster has none of that name.

Library use (tests)::

    centers = fake_nodes.load_centers(["crds/examples"])
    nodes = fake_nodes.nodes_for_centers(centers, nodes_per_pool=1)
    fake_nodes.apply_nodes(core_v1, nodes)
    fake_nodes.delete_nodes(core_v1, nodes)

Command line (from the repo root)::

    python tests/cluster/fake_nodes.py apply -f crds/examples/ --nodes-per-pool 2
    python tests/cluster/fake_nodes.py render -f centers.yaml      # print the Node YAML
    python tests/cluster/fake_nodes.py delete -f centers.yaml      # or: delete --all

Manifests are read as plain dicts on purpose: this test tool must not depend on the
operator's models, and it must work on a cluster that has no Suanli CRDs at all.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
FAKE_NODE_VALUE = "fake"
CENTER_LABEL = "suanli.io/center"
POOL_LABEL = "suanli.io/pool"
KWOK_TYPE_LABEL = "type"
KWOK_TYPE_VALUE = "kwok"
# Selects every node this module made (used by ``delete --all`` and tests).
FAKE_NODE_SELECTOR = f"{KWOK_TYPE_LABEL}={KWOK_TYPE_VALUE},{CENTER_LABEL}"

DRA_DEVICES_ANNOTATION = "suanli.io/fake-dra-devices"  # devices the node's ResourceSlice publishes
DRA_DRIVER_ANNOTATION = "suanli.io/fake-dra-driver"  # and the driver (the pool's deviceClassName)
DEFAULT_CPU = "128"
DEFAULT_MEMORY = "1Ti"
DEFAULT_PODS = "110"

_REPO_ROOT = Path(__file__).resolve().parents[2]


class ManifestError(ValueError):
    """A ComputeCenter manifest cannot be turned into nodes; the message names file, object and field."""


# --- reading manifests ------------------------------------------------------------


def _yaml_files(path: Path) -> Iterator[Path]:
    if path.is_dir():
        for child in sorted(path.iterdir()):
            if child.is_file() and child.suffix in (".yaml", ".yml"):
                yield child
    elif path.is_file():
        yield path
    else:
        raise ManifestError(f"{path}: no such file or directory")


def load_centers(paths: Iterable[str | os.PathLike[str]]) -> list[dict[str, Any]]:
    """Read the ComputeCenter objects from YAML files or folders (multi-document; other kinds skipped).

    Folders are read one level deep, in name order. Each returned dict gets the source file
    under the key ``"__file__"`` so errors can name it.
    """
    centers: list[dict[str, Any]] = []
    for raw in paths:
        for file in _yaml_files(Path(raw)):
            try:
                documents = list(yaml.safe_load_all(file.read_text()))
            except yaml.YAMLError as exc:
                raise ManifestError(f"{file}: not valid YAML: {exc}") from exc
            for doc in documents:
                if isinstance(doc, dict) and doc.get("kind") == "ComputeCenter":
                    centers.append({**doc, "__file__": str(file)})
    return centers


# --- building Node manifests --------------------------------------------------------


def _dns_label(text: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label or "x"


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-._")


def node_name(center: str, pool: str, index: int) -> str:
    """``<center>-<pool>-<index>``, made a valid Node name (lowercase DNS subdomain)."""
    return f"{_dns_label(center)}-{_dns_label(pool)}-{index}"[:253]


def taints_for(tolerations: Iterable[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Node taints that exactly the given tolerations tolerate.

    ``{key, operator: Exists|Equal, value, effect}`` becomes ``{key, value, effect}``
    (value only for Equal; a toleration without effect becomes a NoSchedule taint).
    A keyless ``Exists`` toleration tolerates everything, so it needs no taint.
    """
    taints: list[dict[str, str]] = []
    for tol in tolerations or []:
        key = tol.get("key")
        if not key:
            continue
        taint = {"key": str(key), "effect": str(tol.get("effect") or "NoSchedule")}
        if tol.get("operator", "Equal") == "Equal" and tol.get("value") not in (None, ""):
            taint["value"] = str(tol["value"])
        if taint not in taints:
            taints.append(taint)
    return taints


def _require(obj: dict[str, Any], field: str, where: str) -> Any:
    value = obj.get(field)
    if value in (None, ""):
        raise ManifestError(f"{where}.{field} is required to make fake nodes")
    return value


def nodes_for_pool(
    center: str,
    pool: dict[str, Any],
    *,
    count: int,
    where: str = "pool",
    cpu: str = DEFAULT_CPU,
    memory: str = DEFAULT_MEMORY,
    pods: str = DEFAULT_PODS,
) -> list[dict[str, Any]]:
    """``count`` Node manifests for one pool (a plain dict from ``spec.pools[]``)."""
    pool_name = str(_require(pool, "name", where))
    device_class = str(pool.get("deviceClassName") or "")
    resource_name = "" if device_class else str(_require(pool, "resourceName", where))
    expected = pool.get("expected") or {}
    per_node = _require(expected, "acceleratorsPerNode", f"{where}.expected")
    if not isinstance(per_node, int) or per_node < 0:
        raise ManifestError(
            f"{where}.expected.acceleratorsPerNode must be a whole number >= 0, got {per_node!r}"
        )
    selector = pool.get("nodeSelector") or {}
    if not isinstance(selector, dict):
        raise ManifestError(f"{where}.nodeSelector must be a map of label to value, got {selector!r}")

    resources = {"cpu": cpu, "memory": memory, "pods": pods}
    if resource_name:
        resources[resource_name] = str(per_node)
    nodes = []
    for index in range(count):
        name = node_name(center, pool_name, index)
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            KWOK_TYPE_LABEL: KWOK_TYPE_VALUE,
            CENTER_LABEL: center,
            POOL_LABEL: pool_name,
        }
        if pool.get("acceleratorType"):
            labels["suanli.io/accelerator-type"] = str(pool["acceleratorType"])
        if pool.get("model"):
            labels["suanli.io/accelerator-model"] = _label_value(str(pool["model"]))
        # The pool's own selector wins: pods placed with it must land on these nodes.
        labels.update({str(k): str(v) for k, v in selector.items()})
        annotations = {FAKE_NODE_ANNOTATION: FAKE_NODE_VALUE}
        if pool.get("memoryGiB") is not None:
            annotations["suanli.io/accelerator-memory-gib"] = str(pool["memoryGiB"])
        if device_class:
            annotations[DRA_DEVICES_ANNOTATION] = str(per_node)
            annotations[DRA_DRIVER_ANNOTATION] = device_class
        node: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"taints": taints_for(pool.get("tolerations"))},
            "status": {"capacity": dict(resources), "allocatable": dict(resources)},
        }
        nodes.append(node)
    return nodes


def nodes_for_centers(
    centers: Iterable[dict[str, Any]],
    *,
    nodes_per_pool: int | None = None,
    max_nodes_per_pool: int | None = None,
) -> list[dict[str, Any]]:
    """Node manifests for every pool of the given ComputeCenter dicts.

    Node count per pool: ``nodes_per_pool`` if given, else the pool's ``expected.nodes``,
    then capped at ``max_nodes_per_pool`` if given.
    """
    nodes: list[dict[str, Any]] = []
    for center in centers:
        source = center.get("__file__", "<manifest>")
        center_name = (center.get("metadata") or {}).get("name")
        if not center_name:
            raise ManifestError(f"{source}: ComputeCenter without metadata.name")
        pools = (center.get("spec") or {}).get("pools") or []
        for i, pool in enumerate(pools):
            where = f"{source}: ComputeCenter {center_name}: spec.pools[{i}]"
            if nodes_per_pool is not None:
                count = nodes_per_pool
            else:
                count = _require(pool.get("expected") or {}, "nodes", f"{where}.expected")
                if not isinstance(count, int) or count < 0:
                    raise ManifestError(f"{where}.expected.nodes must be a whole number >= 0, got {count!r}")
            if max_nodes_per_pool is not None:
                count = min(count, max_nodes_per_pool)
            nodes.extend(nodes_for_pool(center_name, pool, count=count, where=where))
    return nodes


# --- talking to the API server ------------------------------------------------------


def default_kubeconfig() -> str | None:
    """KUBECONFIG if set, else the local cluster's ``.cluster/kubeconfig`` if present, else None."""
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    local = _REPO_ROOT / ".cluster" / "kubeconfig"
    return str(local) if local.exists() else None


def core_v1_api(kubeconfig: str | None = None) -> Any:
    """A ``kubernetes.client.CoreV1Api`` for the given (or default) kubeconfig."""
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig or default_kubeconfig())
    return client.CoreV1Api(api_client)


def apply_nodes(core_v1: Any, nodes: Iterable[dict[str, Any]]) -> list[str]:
    """Create the nodes, or bring existing ones to the manifest (labels, annotations, taints, capacity).

    Returns the names. Status (capacity/allocatable) is written through the status
    subresource, since the API server keeps it only on create. A DRA pool's node gets its
    ResourceSlice (`publish_devices`).
    """
    from kubernetes.client.exceptions import ApiException

    names = []
    for node in nodes:
        name = node["metadata"]["name"]
        try:
            made = core_v1.create_node(node)
        except ApiException as exc:
            if exc.status != 409:
                raise
            made = core_v1.patch_node(name, {"metadata": node["metadata"], "spec": node["spec"]})
            core_v1.patch_node_status(name, {"status": node["status"]})
        publish_devices(core_v1.api_client, node, made.metadata.uid)
        names.append(name)
    return names


def device_class(driver: str) -> dict[str, Any]:
    """The DeviceClass selecting every device of `driver` (named like it)."""
    return {"apiVersion": "resource.k8s.io/v1", "kind": "DeviceClass", "metadata": {"name": driver},
            "spec": {"selectors": [{"cel": {"expression": f'device.driver == "{driver}"'}}]}}


def resource_slice(node: dict[str, Any], uid: str) -> dict[str, Any] | None:
    """The ResourceSlice a DRA driver would publish for a fake node of a DRA pool (None for other
    nodes), owned by the Node (uid `uid`)."""
    meta = node["metadata"]
    annotations = meta.get("annotations") or {}
    driver = annotations.get(DRA_DRIVER_ANNOTATION)
    if not driver:
        return None
    labels = meta.get("labels") or {}
    attributes: dict[str, Any] = {}
    for key, label in (("model", "suanli.io/accelerator-model"), ("type", "suanli.io/accelerator-type")):
        if labels.get(label):
            attributes[key] = {"string": labels[label]}
    memory = annotations.get("suanli.io/accelerator-memory-gib")
    devices = []
    for i in range(int(annotations[DRA_DEVICES_ANNOTATION])):
        device: dict[str, Any] = {"name": f"accel-{i}", "attributes": {**attributes, "index": {"int": i}}}
        if memory:
            device["capacity"] = {"memory": {"value": f"{int(float(memory) * 1024)}Mi"}}
        devices.append(device)
    name = meta["name"]
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceSlice",
        "metadata": {"name": f"{name}-{_dns_label(driver)}"[:253],
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]},
        "spec": {"driver": driver, "nodeName": name, "pool": {"name": name, "generation": 1, "resourceSliceCount": 1},
                 "devices": devices},
    }


def publish_devices(api_client: Any, node: dict[str, Any], uid: str) -> None:
    """Publish a DRA pool's fake node's ResourceSlice (replacing an older one), and its DeviceClass
    when the cluster has none of that name; nothing for other nodes."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    slice_ = resource_slice(node, uid)
    if slice_ is None:
        return
    custom = client.CustomObjectsApi(api_client)
    for doc, plural in ((device_class(slice_["spec"]["driver"]), "deviceclasses"), (slice_, "resourceslices")):
        try:
            custom.create_cluster_custom_object("resource.k8s.io", "v1", plural, doc)
        except ApiException as exc:
            if exc.status != 409:
                raise
            if plural == "resourceslices":
                current = custom.get_cluster_custom_object("resource.k8s.io", "v1", plural, doc["metadata"]["name"])
                doc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                doc["spec"]["pool"]["generation"] = current["spec"]["pool"]["generation"] + 1
                custom.replace_cluster_custom_object("resource.k8s.io", "v1", plural, doc["metadata"]["name"], doc)


def delete_nodes(core_v1: Any, nodes: Iterable[dict[str, Any] | str]) -> list[str]:
    """Delete nodes given as manifests or names; missing ones are fine. Returns the names asked for."""
    from kubernetes.client.exceptions import ApiException

    names = [n if isinstance(n, str) else n["metadata"]["name"] for n in nodes]
    for name in names:
        try:
            core_v1.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    return names


def delete_all_fake_nodes(core_v1: Any) -> list[str]:
    """Delete every node made by this module (label ``type=kwok`` and a ``suanli.io/center`` label)."""
    names = [n.metadata.name for n in core_v1.list_node(label_selector=FAKE_NODE_SELECTOR).items]
    return delete_nodes(core_v1, names)


# --- command line -------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fake_nodes",
        description="Make kwok fake nodes for the pools of ComputeCenter manifests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command, text in (
        ("apply", "create or update the nodes"),
        ("render", "print the Node manifests as YAML (no cluster needed)"),
        ("delete", "delete the nodes of the given centers (or --all fake nodes)"),
    ):
        p = sub.add_parser(command, help=text)
        p.add_argument(
            "-f",
            "--filename",
            action="append",
            default=[],
            metavar="PATH",
            help="ComputeCenter YAML file or folder (repeatable)",
        )
        p.add_argument(
            "--nodes-per-pool", type=int, metavar="N", help="make N nodes per pool instead of expected.nodes"
        )
        p.add_argument("--max-nodes-per-pool", type=int, metavar="N", help="make at most N nodes per pool")
        if command != "render":
            p.add_argument("--kubeconfig", help="default: $KUBECONFIG, else .cluster/kubeconfig")
        if command == "delete":
            p.add_argument("--all", action="store_true", help="delete every node this tool made")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.filename and not (args.command == "delete" and args.all):
        print("fake_nodes: give at least one -f PATH", file=sys.stderr)
        return 2
    try:
        nodes = nodes_for_centers(
            load_centers(args.filename),
            nodes_per_pool=args.nodes_per_pool,
            max_nodes_per_pool=args.max_nodes_per_pool,
        )
    except ManifestError as exc:
        print(f"fake_nodes: {exc}", file=sys.stderr)
        return 2
    if args.command == "render":
        yaml.safe_dump_all(nodes, sys.stdout, sort_keys=False)
        return 0
    core_v1 = core_v1_api(args.kubeconfig)
    if args.command == "apply":
        names = apply_nodes(core_v1, nodes)
        print(f"applied {len(names)} fake nodes: {' '.join(names)}")
    else:
        names = delete_all_fake_nodes(core_v1) if args.all else delete_nodes(core_v1, nodes)
        print(f"deleted {len(names)} fake nodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
