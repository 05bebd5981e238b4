"""Events aggregated on a real API server (suanli.kube.client.Api.event over suanli.kube.events):
one Event per (object, type, reason, message) whose count rises, found again by a restarted
operator (409) and posted again when it was deleted (404). Every assertion reads a real LIST."""

from __future__ import annotations

from typing import Any

import pytest
from tests.e2e.helpers import compute_job

from suanli.kube import client as client_mod

pytestmark = pytest.mark.cluster
GROUP, VERSION = "suanli.io", "v1alpha1"


def make_api(kube: Any, instance: str) -> Any:
    return client_mod.Api(client_mod.api_client(kube.kubeconfig, pool_size=2), workers=1, instance=instance)


@pytest.fixture
def job(custom_objects: Any, namespace: str) -> tuple[str, str, str, str]:
    created = custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "computejobs", compute_job("retrying", namespace, count=1)
    )
    return ("ComputeJob", namespace, "retrying", created["metadata"]["uid"])


def events_about(core_v1: Any, namespace: str, name: str) -> list[Any]:
    items = core_v1.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return sorted(items, key=lambda e: (e.reason, e.type, e.message))


def test_fifty_repeats_are_one_event_with_count_fifty(kube: Any, core_v1: Any, namespace: str, job: Any) -> None:
    api = make_api(kube, "suanli-replica-a")
    try:
        for _ in range(50):
            api.event(job, "Waiting", "no pool has 1 free GPU", False)
        [event] = events_about(core_v1, namespace, "retrying")
        assert (event.count, event.reason, event.type) == (50, "Waiting", "Normal")
        assert event.involved_object.uid == job[3]
        assert event.reporting_component == "suanli"
        assert event.reporting_instance == "suanli-replica-a"
        assert (event.source.component, event.source.host) == ("suanli", "suanli-replica-a")

        api.event(job, "Waiting", "no pool has 1 free GPU", True)  # a Warning is another Event
        api.event(job, "Deferred", "no pool has 1 free GPU", False)  # so is another reason
        assert [(e.reason, e.type, e.count) for e in events_about(core_v1, namespace, "retrying")] == [
            ("Deferred", "Normal", 1), ("Waiting", "Normal", 50), ("Waiting", "Warning", 1)
        ]
    finally:
        api.close()


def test_a_restart_continues_the_count_and_a_deleted_event_comes_back_with_it(
    kube: Any, core_v1: Any, namespace: str, job: Any
) -> None:
    first = make_api(kube, "suanli-replica-a")
    try:
        for _ in range(3):
            first.event(job, "Waiting", "queued behind 2 jobs")
    finally:
        first.close()
    [before] = events_about(core_v1, namespace, "retrying")

    second = make_api(kube, "suanli-replica-b")  # a new leader: it knows nothing, the name is the same
    try:
        second.event(job, "Waiting", "queued behind 2 jobs")
        [after] = events_about(core_v1, namespace, "retrying")
        assert after.metadata.name == before.metadata.name
        assert after.count == 4
        assert after.first_timestamp == before.first_timestamp
        assert after.reporting_instance == "suanli-replica-b"

        core_v1.delete_namespaced_event(after.metadata.name, namespace)  # as --event-ttl would
        assert events_about(core_v1, namespace, "retrying") == []
        second.event(job, "Waiting", "queued behind 2 jobs")  # PATCH 404, POST again
        [back] = events_about(core_v1, namespace, "retrying")
        assert (back.metadata.name, back.count) == (before.metadata.name, 5)
        assert back.first_timestamp == before.first_timestamp
    finally:
        second.close()
