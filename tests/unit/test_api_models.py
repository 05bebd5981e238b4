"""API models: defaults, aliases and the errors users see."""

from __future__ import annotations

import pytest

from suanli.api import common, manifests

CENTER = """
apiVersion: suanli.io/v1alpha1
kind: ComputeCenter
metadata: {name: guian-ai}
spec:
  region: cn-guizhou
  energy:
    pue: 1.15
    carbonIntensity: {gramsPerKWh: 400, schedule: [{start: "10:00", end: "16:00", gramsPerKWh: 250}]}
    pricePerKWh: {value: 0.38}
    budget: {kWh: 50000, period: Day}
  pools:
    - name: ascend-910b
      acceleratorType: NPU
      model: Ascend910B
      resourceName: huawei.com/Ascend910
      nodeSelector: {suanli.io/pool: guian-ascend-910b}
      expected: {nodes: 16, acceleratorsPerNode: 8}
"""

JOB = """
apiVersion: suanli.io/v1alpha1
kind: ComputeJob
metadata: {name: llm, namespace: team-a}
spec:
  replicas: 2
  accelerators: {count: 8, types: [GPU, NPU], minMemoryGiB: 40, precision: bf16}
  images: {GPU: img:cuda, NPU: img:cann}
  runtime: {estimatedDuration: 1h30m}
  energy: {maxKWh: 1500}
"""


def test_round_trip_keeps_wire_names() -> None:
    parsed = manifests.parse_text(CENTER + "---\n" + JOB, "x.yaml")
    center, job = parsed.centers[0], parsed.jobs[0]
    assert center.spec.energy.budget is not None and center.spec.energy.budget.k_wh == 50000
    assert center.spec.energy.carbon_intensity.schedule[0].grams_per_k_wh == 250
    wire = job.spec.to_wire()
    assert wire["accelerators"]["minMemoryGiB"] == 40
    assert wire["energy"]["maxKWh"] == 1500
    assert job.spec.runtime is not None and job.spec.runtime.seconds == 5400
    assert job.key == ("team-a", "llm")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("6h", 21600), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert common.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["6hours", "", "h", "-1h", "1d", "6 h"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="Go-style"):
        common.parse_duration(text)


def test_missing_image_names_the_type() -> None:
    bad = JOB.replace("images: {GPU: img:cuda, NPU: img:cann}", "images: {GPU: img:cuda}")
    with pytest.raises(manifests.InvalidManifests) as err:
        manifests.parse_text(bad, "jobs.yaml")
    assert "jobs.yaml: ComputeJob team-a/llm: spec.images:" in str(err.value)
    assert "images.NPU" in str(err.value)


def test_plan_refuses_two_objects_with_one_name(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from suanli import cli

    (tmp_path / "a.yaml").write_text(CENTER)
    (tmp_path / "b.yaml").write_text(CENTER)
    assert cli.main(["plan", "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "b.yaml: ComputeCenter guian-ai: metadata.name: is also defined in" in err and "a.yaml" in err


def test_plan_reads_a_folder_like_kubectl_not_its_subfolders(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from suanli import cli

    (tmp_path / "a.yaml").write_text(CENTER + "---\n" + JOB)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text(CENTER)
    assert cli.main(["plan", "-f", str(tmp_path), "-o", "json"]) == 0
    assert '"phase": "Bound"' in capsys.readouterr().out
