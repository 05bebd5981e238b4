"""spec.retry (issue #16): a gang that fails with an exit code the policy lists runs again as a whole, up
to maxAttempts; another code, or the last run, fails it. On the mock API of tests/unit/test_lifecycle.py
(the e2e test, tests/e2e/test_training.py, has kwok fail real pods)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from tests.unit import test_lifecycle as lc

from suanli.kube import attempts


def failed_pod(code: int) -> dict[str, Any]:
    return lc.pod_object(phase="Failed", containerStatuses=[
        {"name": "main", "state": {"terminated": {"exitCode": code, "reason": "Error"}}}])


def run(code: int, retry: dict[str, Any] | None, retries: int = 0) -> tuple[list[dict[str, Any]], Any]:
    async def go() -> Any:
        sched, api, _, _ = lc.make(requeue_backoff_seconds=10)
        doc = lc.bound_job("Running")
        if retry is not None:
            doc["spec"]["retry"] = retry
        if retries:
            doc["status"].update(retries=retries, attempts=[
                {"attempt": i, "center": "c1", "pool": "a100", "ended": lc.clock_mod_rfc(lc.NOW), "outcome": "Retried",
                 "exitCode": code} for i in range(retries)])
        sched.cache.upsert_job(doc, lc.NOW)
        job = lc.job_object(attempt=retries, conditions=[{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}])
        job["status"]["active"] = 0
        sched.cache.upsert_workload(job)
        pod = failed_pod(code)
        pod["metadata"]["labels"]["suanli.io/attempt"] = str(retries)
        sched.cache.upsert_pod(pod)
        await lc.step(sched)
        return api

    api = asyncio.run(go())
    return api.patches, api


def test_a_listed_exit_code_runs_the_gang_again_with_the_run_counted_and_listed() -> None:
    patches, api = run(42, {"maxAttempts": 3, "onExitCodes": [42, 43]})
    (patch,) = patches
    assert patch["phase"] == "Queued" and patch["retries"] == 1 and "requeues" not in patch
    assert "exited with code 42" in patch["message"]
    assert "run 1 of 3 (spec.retry.maxAttempts) failed, running it again as a whole" in patch["message"]
    (listed,) = patch["attempts"]
    assert (listed["attempt"], listed["outcome"], listed["exitCode"]) == (0, "Retried", 42)
    assert patch["conditions"][0]["type"] == "Retried" and patch["requeueAt"] == lc.clock_mod_rfc(lc.NOW + 10)
    assert api.deleted == [("team-a", "cj-a", f"job-{lc.UID}-0")]
    assert ("main", "event", "Retried") in api.writes


def test_a_code_not_listed_fails_at_once_and_says_so() -> None:
    patches, _ = run(1, {"maxAttempts": 3, "onExitCodes": [42]})
    (patch,) = patches
    assert patch["phase"] == "Failed" and "(not an exit code spec.retry retries)" in patch["message"]
    assert [(a["outcome"], a.get("exitCode")) for a in patch["attempts"]] == [("Failed", 1)]


def test_the_last_allowed_run_fails_and_says_which_run_it_was() -> None:
    patches, _ = run(42, {"maxAttempts": 3, "onExitCodes": [42]}, retries=2)
    (patch,) = patches
    assert patch["phase"] == "Failed" and "(run 3 of 3, spec.retry.maxAttempts)" in patch["message"]
    assert [(a["attempt"], a["outcome"]) for a in patch["attempts"]] == [(0, "Retried"), (1, "Retried"), (2, "Failed")]


def test_without_a_policy_a_failure_is_final_as_before() -> None:
    patches, _ = run(42, None)
    (patch,) = patches
    assert patch["phase"] == "Failed" and "spec.retry" not in patch["message"]


@pytest.mark.parametrize(("retry", "code", "retries", "want"), [
    ((3, ()), 7, 0, True),           # an empty list retries any non-zero code
    ((3, ()), 7, 2, False),          # no run left
    ((1, ()), 7, 0, False),          # the default: one run
    ((3, (42,)), 7, 0, False),       # not listed
    ((3, (42,)), 42, 1, True),
])
def test_retried(retry: tuple[int, tuple[int, ...]], code: int, retries: int, want: bool) -> None:
    pod = lc.pinfo("Failed", failure=f"pod p: container main exited with code {code} (Error)")
    pod = dataclasses.replace(pod, exit_code=code)
    got = attempts.retried([pod], retry, retries)
    assert (got is not None) is want and (got is None or got[1] == code)
    disrupted = dataclasses.replace(pod, disruption="node lost")
    assert attempts.retried([disrupted], retry, retries) is None  # a disruption is never the user's attempt


def test_a_failed_pods_message_and_exit_code_name_the_same_container() -> None:
    """A sidecar that exited 0, listed before the main container that exited 42: the failure is the main
    container's, in the message and in the code the retry policy reads (they once named different ones)."""
    from suanli.kube import objects as kobj

    pod = {
        "metadata": {"name": "p", "namespace": "team-a", "labels": {"suanli.io/job": "j"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "logs"}, {"name": "main"}]},
        "status": {"phase": "Failed", "containerStatuses": [
            {"name": "logs", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
            {"name": "main", "state": {"terminated": {"exitCode": 42, "reason": "Error", "message": "NCCL timeout"}}},
        ]},
    }
    info = kobj.pod_info(pod)
    assert info is not None
    assert info.exit_code == 42
    assert info.failure == "pod p: container main exited with code 42 (Error): NCCL timeout"
    ok = {**pod, "status": {**pod["status"], "containerStatuses": pod["status"]["containerStatuses"][:1]}}
    only_zero = kobj.pod_info(ok)
    assert only_zero is not None and only_zero.exit_code is None
    assert only_zero.failure == "pod p: container logs exited with code 0 (Completed)"
