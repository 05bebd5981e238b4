"""`suanli run --log-format json` against a real API server: every line the process writes (stdout and
stderr, from the start through a job's life to the stop) is one JSON object, and the records about
the job carry its namespace and name (what a Loki or Elasticsearch pipeline keys on).

A job's ordinary life logs nothing at INFO about it; suspending a running job does ("<ns>/<name>:
suspended ..."), so the test suspends one.
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.helpers import (
    GROUP,
    VERSION,
    OperatorProcess,
    compute_job,
    job_phases,
    only_on,
    small_center,
    wait_for_phase,
)

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_every_line_is_json_and_job_records_name_the_job(
    kube: Any, tmp_path: Path, fake_nodes: Any, custom_objects: Any, namespace: str, wait_for: Any
) -> None:
    op = OperatorProcess(
        kube.kubeconfig, tmp_path, "json-logs", ["--namespace", namespace, "--log-format", "json"]
    ).start()
    name = f"e2e-logs-{uuid.uuid4().hex[:5]}"
    center = small_center(name, 1, 8)
    job = compute_job("logged", namespace, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "600s"})
    only_on(center, job)
    try:
        fake_nodes(center, nodes_per_pool=1)
        custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", center)
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", job)
        wait_for(lambda: job_phases(custom_objects, namespace).get("logged") == "Running", 120,
                 lambda: job_phases(custom_objects, namespace), what="the job to run")
        custom_objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "computejobs", "logged", {"spec": {"suspend": True}}
        )
        wait_for_phase(custom_objects, namespace, "logged", "Suspended", what="the job suspended")

        def about_the_job() -> list[dict[str, Any]] | None:
            lines = [json.loads(line) for line in op.log_text().splitlines() if line.startswith("{")]
            found = [r for r in lines if (r.get("namespace"), r.get("name")) == (namespace, "logged")]
            return found or None

        # The record is written after the status; wait for it, bounded.
        records = wait_for(about_the_job, 30, lambda: op.log_text()[-3000:], what="a log record about the job")
    finally:
        custom_objects.delete_cluster_custom_object(GROUP, VERSION, "computecenters", name)
        op.stop()

    text = op.log_text()
    lines = text.splitlines()
    assert len(lines) >= 3, text
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"line {number} of the operator's output is not JSON ({exc}): {line!r}")
    for record in parsed:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["time"].endswith("Z"), record
        datetime.datetime.fromisoformat(record["time"])
    assert any(r["logger"] == "suanli.run" and r["message"].startswith("cache primed") for r in parsed)
    assert all(r["kind"] == "ComputeJob" and f"{namespace}/logged" in r["message"] for r in records), records
