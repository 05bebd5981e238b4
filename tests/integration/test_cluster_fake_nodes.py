"""fake_nodes turns ComputeCenter pools into kwok Nodes (pure part first, then against the API server)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster import fake_nodes as fake_nodes_lib

CENTERS_YAML = textwrap.dedent(
    """
    apiVersion: suanli.io/v1alpha1
    kind: ComputeCenter
    metadata: {name: guian-ai}
    spec:
      region: cn-guizhou
      pools:
        - name: ascend-910b
          acceleratorType: NPU
          model: Ascend910B
          resourceName: huawei.com/Ascend910
          nodeSelector: {suanli.io/pool: guian-ascend-910b}
          tolerations: [{key: huawei.com/Ascend910, operator: Exists, effect: NoSchedule}]
          memoryGiB: 64
          expected: {nodes: 3, acceleratorsPerNode: 8}
        - name: a100
          acceleratorType: GPU
          model: A100
          resourceName: nvidia.com/gpu
          nodeSelector: {gpu: a100}
          tolerations:
            - {key: dedicated, operator: Equal, value: gpu}
            - {operator: Exists}
          expected: {nodes: 2, acceleratorsPerNode: 4}
    ---
    apiVersion: suanli.io/v1alpha1
    kind: ComputeJob
    metadata: {name: ignored, namespace: team-a}
    spec: {}
    """
)


@pytest.fixture
def centers(tmp_path: Path) -> list[dict[str, Any]]:
    (tmp_path / "centers.yaml").write_text(CENTERS_YAML)
    (tmp_path / "notes.txt").write_text("not yaml: skipped")
    return fake_nodes_lib.load_centers([tmp_path])


def test_only_compute_centers_are_read(centers: list[dict[str, Any]]) -> None:
    assert [c["metadata"]["name"] for c in centers] == ["guian-ai"]


def test_each_pool_gets_its_expected_nodes_named_center_pool_index(centers: list[dict[str, Any]]) -> None:
    names = [n["metadata"]["name"] for n in fake_nodes_lib.nodes_for_centers(centers)]
    assert names == [
        "guian-ai-ascend-910b-0",
        "guian-ai-ascend-910b-1",
        "guian-ai-ascend-910b-2",
        "guian-ai-a100-0",
        "guian-ai-a100-1",
    ]


def test_node_count_can_be_overridden_or_capped(centers: list[dict[str, Any]]) -> None:
    assert len(fake_nodes_lib.nodes_for_centers(centers, nodes_per_pool=1)) == 2
    assert len(fake_nodes_lib.nodes_for_centers(centers, max_nodes_per_pool=2)) == 4


def test_node_carries_selector_labels_kwok_annotation_taints_and_accelerators(
    centers: list[dict[str, Any]],
) -> None:
    npu, *_, gpu = fake_nodes_lib.nodes_for_centers(centers)
    assert npu["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
    labels = npu["metadata"]["labels"]
    # The pool's selector wins over the default suanli.io/pool label (pods use the selector).
    assert labels["suanli.io/pool"] == "guian-ascend-910b"
    assert labels["suanli.io/center"] == "guian-ai" and labels["type"] == "kwok"
    assert npu["spec"]["taints"] == [{"key": "huawei.com/Ascend910", "effect": "NoSchedule"}]
    assert npu["status"]["capacity"]["huawei.com/Ascend910"] == "8"
    assert npu["status"]["allocatable"] == npu["status"]["capacity"]
    assert {"cpu", "memory", "pods"} <= set(npu["status"]["capacity"])
    assert gpu["metadata"]["labels"]["gpu"] == "a100"
    # Equal toleration -> taint with value and default effect; a keyless Exists needs no taint.
    assert gpu["spec"]["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]


def test_missing_accelerators_per_node_is_an_error_naming_file_object_and_field(tmp_path: Path) -> None:
    bad = CENTERS_YAML.replace("expected: {nodes: 2, acceleratorsPerNode: 4}", "expected: {nodes: 2}")
    (tmp_path / "bad.yaml").write_text(bad)
    with pytest.raises(
        fake_nodes_lib.ManifestError,
        match=r"bad\.yaml.*guian-ai.*spec\.pools\[1\]\.expected\.acceleratorsPerNode",
    ):
        fake_nodes_lib.nodes_for_centers(fake_nodes_lib.load_centers([tmp_path / "bad.yaml"]))


def test_render_command_prints_node_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c.yaml").write_text(CENTERS_YAML)
    assert fake_nodes_lib.main(["render", "-f", str(tmp_path / "c.yaml"), "--nodes-per-pool", "1"]) == 0
    assert "name: guian-ai-a100-0" in capsys.readouterr().out


@pytest.mark.cluster
def test_applied_nodes_become_ready_with_accelerator_capacity(core_v1: Any, fake_nodes: Any) -> None:
    center = fake_nodes_center()
    [name] = fake_nodes(center, nodes_per_pool=1)
    node = core_v1.read_node(name)
    assert node.status.allocatable["huawei.com/Ascend910"] == "8"
    assert node.metadata.labels["suanli.io/center"] == center["metadata"]["name"]
    # Applying again is an update of the same node, not an error nor a second node.
    assert fake_nodes(center, nodes_per_pool=1) == [name]
    assert core_v1.read_node(name).metadata.uid == node.metadata.uid


def fake_nodes_center() -> dict[str, Any]:
    center = next(d for d in yaml.safe_load_all(CENTERS_YAML) if d["kind"] == "ComputeCenter")
    center["metadata"]["name"] = f"fn-{uuid.uuid4().hex[:6]}"
    center["spec"]["pools"] = center["spec"]["pools"][:1]
    return center
