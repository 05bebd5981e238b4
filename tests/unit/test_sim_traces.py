"""Trace loaders and their options: row -> job mapping, skips counted, errors that say what to do."""

from __future__ import annotations

import ast
import datetime
import pathlib

import builders
import pytest

from suanli.scoring import fleet as fleet_mod
from suanli.sim import options, traces

REPO = pathlib.Path(__file__).resolve().parents[2]
ALIBABA = REPO.parent / "shared" / "data" / "alibaba-gpu-v2023"
HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"


def _fleet() -> fleet_mod.Fleet:
    return fleet_mod.build(
        [
            builders.center("east", "cn-a", [builders.pool("v100", model="V100", nodes=2)]),
            builders.center("west", "cn-b", [builders.pool("t4", model="T4", nodes=2, per_node=4)]),
        ]
    )


def _csv(tmp_path: pathlib.Path, rows: list[str], header: str = HEADER) -> str:
    path = tmp_path / "pods.csv"
    path.write_text(header + "".join(r + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_alibaba_rows_become_jobs_as_documented(tmp_path: pathlib.Path) -> None:
    path = _csv(
        tmp_path,
        [
            "p0,1000,1024,1,460,,LS,Succeeded,100,1300,100",  # fraction of a GPU -> 1 accelerator
            "p1,1000,1024,0,0,,BE,Succeeded,200,300,200",  # cpu-only: skipped
            "p2,1000,1024,2,1000,V100M32,LS,Failed,3600,7300,3700",  # ran 3600 s on 2 GPUs
            "p3,1000,1024,1,1000,,BE,Pending,400,500,",  # never scheduled: skipped
            "p4,1000,1024,8,1000,T4|V100M16,LS,Running,500,9000,500",  # still running at the end
        ],
    )
    opts = options.AlibabaOptions(compression=10, start=datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC))
    trace = traces.load_alibaba(path, _fleet(), opts)
    assert trace.skipped == {"cpu-only": 1, "never-ran": 1, "censored": 1}
    by_name = {j.name: j for j in trace.jobs}
    assert sorted(by_name) == ["p0", "p2"]
    start = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC).timestamp()
    p0, p2 = by_name["p0"], by_name["p2"]
    assert (p0.count, p0.replicas, p0.types, p0.models) == (1, 1, ("GPU",), ())
    assert p0.runtime_seconds == 1200 and p0.arrival_epoch == start + 10
    assert (p2.count, p2.models, p2.min_memory_gib) == (2, ("V100",), 32.0)
    assert p2.runtime_seconds == 3600 and p2.arrival_epoch == start + 360
    assert p0.reference_model == "V100" and p0.precision == "fp16"
    assert {j.data_region for j in trace.jobs} <= {"cn-a", "cn-b"}


def test_censored_tasks_can_be_kept_with_their_runtime_cut_at_the_end(tmp_path: pathlib.Path) -> None:
    path = _csv(tmp_path, ["p4,1,1,8,1000,,LS,Running,500,9000,500"])
    trace = traces.load_alibaba(path, _fleet(), options.parse("alibaba-gpu-2023", ["censored=keep"]))
    (job,) = trace.jobs
    assert job.runtime_seconds == 8500


def test_region_weights_steer_the_seeded_draw(tmp_path: pathlib.Path) -> None:
    rows = [f"p{i},1,1,1,1000,,LS,Succeeded,{i},{i + 60},{i}" for i in range(50)]
    path = _csv(tmp_path, rows)
    opts = options.parse("alibaba-gpu-2023", ["region_weights=cn-a:1,cn-b:0"])
    assert {j.data_region for j in traces.load_alibaba(path, _fleet(), opts).jobs} == {"cn-a"}
    again = [j.data_region for j in traces.load_alibaba(path, _fleet(), options.AlibabaOptions()).jobs]
    assert again == [j.data_region for j in traces.load_alibaba(path, _fleet(), options.AlibabaOptions()).jobs]
    with pytest.raises(traces.TraceError, match="cn-z"):
        traces.load_alibaba(path, _fleet(), options.parse("alibaba-gpu-2023", ["region_weights=cn-z:1"]))


def test_a_missing_column_is_named_with_the_expected_header(tmp_path: pathlib.Path) -> None:
    path = _csv(tmp_path, ["p0,1,1,1,1000,,LS,Running,0,10"], header=HEADER.replace(",scheduled_time", ""))
    with pytest.raises(traces.TraceError, match=r"missing column\(s\) scheduled_time.*header"):
        traces.load_alibaba(path, _fleet(), options.AlibabaOptions())


def test_a_bad_number_names_row_and_column(tmp_path: pathlib.Path) -> None:
    path = _csv(tmp_path, ["p0,1,1,1,1000,,LS,Running,soon,10,0"])
    with pytest.raises(traces.TraceError, match="row 2: column creation_time: 'soon'"):
        traces.load_alibaba(path, _fleet(), options.AlibabaOptions())


def test_an_unmapped_model_says_how_to_map_it(tmp_path: pathlib.Path) -> None:
    path = _csv(tmp_path, ["p0,1,1,1,1000,H200,LS,Succeeded,0,10,0"])
    with pytest.raises(traces.TraceError, match="model_map=H200:"):
        traces.load_alibaba(path, _fleet(), options.AlibabaOptions())


def test_options_refuse_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValueError, match=r"'compresion' is not an option.*compression"):
        options.parse("alibaba-gpu-2023", ["compresion=3"])
    with pytest.raises(ValueError, match="compression"):
        options.parse("alibaba-gpu-2023", ["compression=-1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        options.parse("alibaba-gpu-2023", ["compression"])
    parsed = options.parse("alibaba-gpu-2023", ["compression=4", "data-gib=0"])
    assert isinstance(parsed, options.AlibabaOptions)
    assert (parsed.compression, parsed.data_gib) == (4.0, 0.0)


def test_computejob_arrivals_from_annotation_or_creation_time(tmp_path: pathlib.Path) -> None:
    (tmp_path / "jobs.yaml").write_text(
        """
apiVersion: suanli.io/v1alpha1
kind: ComputeJob
metadata: {name: a, namespace: t, annotations: {suanli.io/arrival: "90"}}
spec: {accelerators: {count: 1, types: [GPU]}, images: {GPU: x}}
---
apiVersion: suanli.io/v1alpha1
kind: ComputeJob
metadata: {name: b, namespace: t, creationTimestamp: "2026-01-05T01:00:00Z"}
spec: {accelerators: {count: 1, types: [GPU]}, images: {GPU: x}}
---
apiVersion: suanli.io/v1alpha1
kind: ComputeJob
metadata: {name: c, namespace: t, annotations: {suanli.io/arrival: "tomorrow"}}
spec: {accelerators: {count: 1, types: [GPU]}, images: {GPU: x}}
""",
        encoding="utf-8",
    )
    config = builders.settings_mod.Settings()
    with pytest.raises(traces.TraceError, match=r"t/c: metadata.annotations\[suanli.io/arrival\]: 'tomorrow'"):
        traces.load_computejobs([str(tmp_path)], _fleet(), options.ComputeJobsOptions(), config)
    text = (tmp_path / "jobs.yaml").read_text().replace('"tomorrow"', '"2026-01-05T00:30:00+08:00"')
    (tmp_path / "jobs.yaml").write_text(text, encoding="utf-8")
    trace = traces.load_computejobs([str(tmp_path)], _fleet(), options.ComputeJobsOptions(), config)
    start = traces.DEFAULT_START.timestamp()
    assert [(j.name, j.arrival_epoch - start) for j in trace.jobs] == [("c", -27000.0), ("a", 90.0), ("b", 3600.0)]


def test_the_real_trace_loads_with_its_documented_skips() -> None:
    assert ALIBABA.is_dir(), f"the Alibaba trace is not at {ALIBABA}: put the shared data (../shared/data) beside the repo"
    trace = traces.load_alibaba(str(ALIBABA / "openb_pod_list_default.csv"), _fleet(), options.AlibabaOptions())
    assert len(trace.jobs) + sum(trace.skipped.values()) == 8152
    assert trace.skipped["cpu-only"] == 1088
    assert all(j.count in (1, 2, 4, 8) for j in trace.jobs)


def test_the_simulator_reads_no_clock() -> None:
    forbidden = {("time", "time"), ("time", "monotonic"), ("time", "perf_counter"), ("datetime", "now")}
    for path in sorted((REPO / "operator" / "suanli" / "sim").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) not in forbidden, f"{path.name}:{node.lineno} reads the clock"
