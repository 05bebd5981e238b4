"""No head-of-line blocking, end to end (kube/set_aside.py): with `operator.max_jobs_per_cycle: 1`, two
8-GPU gangs that cannot start wait ahead of a 2-GPU job that can; once each gang has its Queued status it
is set aside, and the small job is bound and runs while the gangs still wait (before, every cycle planned
the first gang again, and the small job never got a turn)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from tests.e2e.helpers import (
    EXPECT_TIMEOUT_S,
    GROUP,
    VERSION,
    Operator,
    centers_fixture,  # noqa: F401  (the `centers` fixture)
    job_status,
    wait_for_phase,
)
from tests.e2e.test_queues import fleet_of_one, job

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]


def test_a_job_that_fits_runs_while_gangs_ahead_of_it_wait(
    kube: Any, tmp_path: Any, fake_nodes: Any, centers: Any, namespace: str, custom_objects: Any, wait_for: Any,
) -> None:
    center, tag = fleet_of_one("e2e-hol", 1, fake_nodes, centers)  # one node of 8 GPUs
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"operator": {"max_jobs_per_cycle": 1}}))
    blocker = job(f"blocker-{tag}", namespace, center, run="600s")
    blocker["spec"]["accelerators"]["count"] = 6
    gangs = [job(f"gang{i}-{tag}", namespace, center, run="3s") for i in (1, 2)]
    small = job(f"small-{tag}", namespace, center, run="3s")
    small["spec"]["accelerators"]["count"] = 2
    op = Operator(kube.kubeconfig, tmp_path, ["--config", str(config)])
    op.start()
    try:
        custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", blocker)
        wait_for_phase(custom_objects, namespace, blocker["metadata"]["name"], "Running", what="the blocker running")
        for doc in (*gangs, small):  # in this order: the gangs are ahead of the small job
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)
        wait_for_phase(custom_objects, namespace, small["metadata"]["name"], "Succeeded",
                       what="the small job run past the gangs ahead of it")
        for gang in gangs:
            status = job_status(custom_objects, namespace, gang["metadata"]["name"])
            assert status["phase"] == "Queued" and "not enough free accelerators" in status["message"], status
        # (other tests' jobs in a shared cluster may be set aside too: at least these two)
        wait_for(lambda: op.metric("suanli_queue_set_aside") >= 2 or None, EXPECT_TIMEOUT_S,
                 lambda: op.metric("suanli_queue_set_aside"), what="both gangs counted as set aside")
        # The gangs come back once capacity they could use frees up: the blocker deleted, both run.
        custom_objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs",
                                                       blocker["metadata"]["name"])
        for gang in gangs:
            wait_for_phase(custom_objects, namespace, gang["metadata"]["name"], "Succeeded",
                           timeout=2 * EXPECT_TIMEOUT_S, what="each gang run once the node is free")
    finally:
        op.stop()
