"""suanli.kube.events.EventRecorder: repeats aggregated into one Event with a rising count, bounded
memory, a per-object spam filter, thread safety.

The recorder talks to a small scripted fake transport. The fake stands in for the API server only
for what a real one cannot be made to answer on demand — a 404 to a PATCH (an Event expired by
--event-ttl mid-series), a 409 to a POST at a chosen moment, a 500 — and so that the requests can be
counted exactly; it keeps Events so that these answers are consistent. The same aggregation against
a real API server, including a restart's 409 and a deleted Event's 404, is
tests/integration/test_events.py.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import threading
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from suanli import metrics
from suanli.clock import ManualClock
from suanli.kube import client as client_mod
from suanli.kube import events

JOB = ("ComputeJob", "team-a", "train", "uid-1")
EVENTS = "/api/v1/namespaces/team-a/events"
START = 1_800_000_000.0


class FakeTransport:
    """Answers like the events endpoint of an API server (POST, GET, merge PATCH), records every
    request, and answers the scripted errors first: `fail("PATCH", 404)` makes the next PATCH fail.
    `hold` (a threading.Event), when set, blocks every request until released."""

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}  # path of the Event -> the Event
        self.requests: list[tuple[str, str, Any]] = []
        self.failures: list[tuple[str, int]] = []
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def fail(self, method: str, status: int) -> None:
        self.failures.append((method, status))

    def expire(self, name: str) -> None:
        """The API server's --event-ttl ran out for this Event (or someone deleted it)."""
        del self.stored[f"{EVENTS}/{name}"]

    def __call__(self, method: str, path: str, body: Any = None, *, content_type: str = "", decode: bool = True) -> Any:
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(10), "the test never released the transport"
        with self._lock:
            self.requests.append((method, path, copy.deepcopy(body)))
            for i, (m, status) in enumerate(self.failures):
                if m == method:
                    del self.failures[i]
                    raise ApiException(status=status, reason=f"scripted {status}")
            if method == "POST":
                target = f"{path}/{body['metadata']['name']}"
                if target in self.stored:
                    raise ApiException(status=409, reason="AlreadyExists")
                self.stored[target] = copy.deepcopy(body)
                return None
            if path not in self.stored:
                raise ApiException(status=404, reason="NotFound")
            if method == "PATCH":
                assert content_type == events.MERGE_PATCH
                merge(self.stored[path], body)
                return None
            assert method == "GET", method
            return copy.deepcopy(self.stored[path])

    def verbs(self) -> list[str]:
        return [method for method, _, _ in self.requests]

    def only(self) -> dict[str, Any]:
        """The one Event stored."""
        assert len(self.stored) == 1, sorted(self.stored)
        return next(iter(self.stored.values()))


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def recorder(transport: FakeTransport, clock: ManualClock, **kwargs: Any) -> events.EventRecorder:
    return events.EventRecorder(transport, now=clock.now, **kwargs)


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_the_same_occurrence_1000_times_is_one_event_whose_count_rises_to_1000() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    outcomes = []
    for _ in range(1000):
        outcomes.append(rec.record(JOB, "Waiting", "no pool has 8 free GPUs"))
        clock.advance(60)
    assert outcomes == ["posted"] + ["patched"] * 999
    assert server.verbs() == ["POST"] + ["PATCH"] * 999
    assert [body["count"] for _, _, body in server.requests] == list(range(1, 1001))
    assert [body for _, _, body in server.requests[1:3]] == [
        {"count": 2, "lastTimestamp": events.rfc3339(START + 60)},
        {"count": 3, "lastTimestamp": events.rfc3339(START + 120)},
    ]
    event = server.only()
    assert event["count"] == 1000
    assert event["firstTimestamp"] == events.rfc3339(START)
    assert event["lastTimestamp"] == events.rfc3339(START + 999 * 60)
    assert event["metadata"] == {"name": events.Key("ComputeJob", "team-a", "train", "uid-1", "Normal", "Waiting",
                                                    "no pool has 8 free GPUs").event_name(), "namespace": "team-a"}
    assert event["involvedObject"] == {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob", "name": "train",
                                       "namespace": "team-a", "uid": "uid-1"}
    assert (event["type"], event["reason"], event["source"], event["reportingComponent"]) == (
        "Normal", "Waiting", {"component": "suanli"}, "suanli")
    assert len(rec) == 1


def test_the_occurrence_time_given_is_the_events_time() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    rec.record(JOB, "Bound", "bound to c1/a100", at=START + 86_400)  # a shifted test clock, say
    assert server.only()["firstTimestamp"] == server.only()["lastTimestamp"] == "2027-01-16T08:00:00Z"


@pytest.mark.parametrize(
    "other",
    [
        (JOB, "Waiting", "no pool has 4 free GPUs", False),  # message
        (JOB, "Deferred", "no pool has 8 free GPUs", False),  # reason
        (JOB, "Waiting", "no pool has 8 free GPUs", True),  # type
        (("ComputeJob", "team-a", "train", "uid-2"), "Waiting", "no pool has 8 free GPUs", False),  # a new object, same name
        (("ComputeJob", "team-b", "train", "uid-1"), "Waiting", "no pool has 8 free GPUs", False),  # namespace
    ],
)
def test_a_different_object_type_reason_or_message_is_a_different_event(other: tuple[Any, str, str, bool]) -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    assert rec.record(JOB, "Waiting", "no pool has 8 free GPUs") == "posted"
    assert rec.record(*other) == "posted"
    assert rec.record(JOB, "Waiting", "no pool has 8 free GPUs") == "patched"
    assert server.verbs() == ["POST", "POST", "PATCH"]
    names = {body["metadata"]["name"] for method, _, body in server.requests if method == "POST"}
    assert len(names) == 2 and all(name.startswith("train.") for name in names)


def test_messages_are_cut_at_1000_characters_and_the_cut_message_is_the_key() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    rec.record(JOB, "Waiting", "x" * 1000 + "a")
    assert rec.record(JOB, "Waiting", "x" * 1000 + "b") == "patched"
    assert server.only()["message"] == "x" * 1000


def test_the_lru_forgets_the_oldest_series_and_the_servers_count_continues() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock, size=2)
    for reason in ("A", "B", "A", "C"):  # "B" is now the least recently used: evicted by "C"
        rec.record(JOB, reason, "m")
    assert len(rec) == 2
    assert rec.record(JOB, "A", "m") == "patched"  # still remembered
    del server.requests[:]
    assert rec.record(JOB, "B", "m") == "posted"  # forgotten: POST, 409, read its count, PATCH it
    assert server.verbs() == ["POST", "GET", "PATCH"]
    assert server.requests[-1][2]["count"] == 2
    assert len(rec) == 2


def test_a_restarted_operator_finds_its_event_by_name_and_continues_the_count() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    first = recorder(server, clock, instance="suanli-a")
    for _ in range(3):
        first.record(JOB, "Waiting", "m")
    clock.advance(30)
    second = recorder(server, clock, instance="suanli-b")
    assert second.record(JOB, "Waiting", "m") == "posted"
    second.record(JOB, "Waiting", "m")
    event = server.only()
    assert event["count"] == 5
    assert event["firstTimestamp"] == events.rfc3339(START)
    assert event["lastTimestamp"] == events.rfc3339(START + 30)
    # the replica that wrote last says so
    assert event["reportingInstance"] == "suanli-b"
    assert event["source"] == {"component": "suanli", "host": "suanli-b"}


def test_a_patch_answering_404_posts_the_event_again_with_its_count_and_first_time() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    for _ in range(3):
        rec.record(JOB, "Waiting", "m")
        clock.advance(600)
    name = server.only()["metadata"]["name"]
    server.expire(name)
    del server.requests[:]
    assert rec.record(JOB, "Waiting", "m") == "patched"
    assert server.verbs() == ["PATCH", "POST"]
    event = server.only()
    assert (event["metadata"]["name"], event["count"]) == (name, 4)
    assert event["firstTimestamp"] == events.rfc3339(START)
    assert event["lastTimestamp"] == events.rfc3339(START + 1800)
    rec.record(JOB, "Waiting", "m")
    assert server.verbs()[-1] == "PATCH" and server.only()["count"] == 5


def test_a_post_answering_409_reads_the_event_and_patches_it() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    key = events.Key(*JOB, "Normal", "Waiting", "m")
    server.stored[f"{EVENTS}/{key.event_name()}"] = {"metadata": {"name": key.event_name()}, "count": 7,
                                                       "firstTimestamp": "2020-01-01T00:00:00Z"}
    assert rec.record(JOB, "Waiting", "m") == "posted"
    assert server.verbs() == ["POST", "GET", "PATCH"]
    assert server.only()["count"] == 8
    rec.record(JOB, "Waiting", "m")
    assert server.verbs()[-1] == "PATCH" and server.only()["count"] == 9


def test_an_event_expiring_between_the_409_and_the_read_is_posted_again() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    server.fail("POST", 409)
    server.fail("GET", 404)
    assert rec.record(JOB, "Waiting", "m") == "posted"
    assert server.verbs() == ["POST", "GET", "POST"]
    assert server.only()["count"] == 1


def test_errors_are_counted_and_logged_never_raised_and_the_count_is_written_with_the_next_repeat() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    creates = sample("suanli_api_write_errors_total", {"verb": "create", "resource": "events"})
    patches = sample("suanli_api_write_errors_total", {"verb": "patch", "resource": "events"})
    server.fail("POST", 500)
    assert rec.record(JOB, "Waiting", "m") == "failed"
    assert not server.stored
    assert rec.record(JOB, "Waiting", "m") == "posted"
    assert server.only()["count"] == 2
    server.fail("PATCH", 500)
    assert rec.record(JOB, "Waiting", "m") == "failed"
    assert rec.record(JOB, "Waiting", "m") == "patched"
    assert server.only()["count"] == 4
    assert sample("suanli_api_write_errors_total", {"verb": "create", "resource": "events"}) == creates + 1
    assert sample("suanli_api_write_errors_total", {"verb": "patch", "resource": "events"}) == patches + 1


def test_a_server_that_never_lets_it_through_is_given_up_not_looped_on() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    for _ in range(10):
        server.fail("POST", 409)
        server.fail("GET", 404)
    assert rec.record(JOB, "Waiting", "m") == "failed"
    assert len(server.requests) == 2 * events.MAX_STALLED


def test_the_spam_filter_bounds_the_new_events_of_one_object_not_its_repeats() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    dropped = sample("suanli_events_dropped_total")
    outcomes = [rec.record(JOB, "Waiting", f"{i} jobs ahead") for i in range(30)]
    assert outcomes == ["posted"] * 25 + ["dropped"] * 5
    assert sample("suanli_events_dropped_total") == dropped + 5
    assert len(server.stored) == 25
    # repeats of an Event already written still count; another object has its own budget
    assert rec.record(JOB, "Waiting", "0 jobs ahead") == "patched"
    assert rec.record(("ComputeJob", "team-a", "other", "uid-9"), "Waiting", "31 jobs ahead") == "posted"
    # one more new Event per 300 s
    clock.advance(299)
    assert rec.record(JOB, "Waiting", "a") == "dropped"
    clock.advance(1)
    assert rec.record(JOB, "Waiting", "b") == "posted"
    assert rec.record(JOB, "Waiting", "c") == "dropped"
    clock.advance(10 * 86_400)  # refills up to the burst, no further
    assert [rec.record(JOB, "Normal", f"d{i}") for i in range(26)] == ["posted"] * 25 + ["dropped"]
    assert sample("suanli_events_dropped_total") == dropped + 8


def test_after_the_window_the_servers_state_decides() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock, window=3600)
    rec.record(JOB, "Waiting", "m")
    clock.advance(3601)
    del server.requests[:]
    assert rec.record(JOB, "Waiting", "m") == "posted"  # still there: its count continues
    assert server.verbs() == ["POST", "GET", "PATCH"] and server.only()["count"] == 2
    server.expire(server.only()["metadata"]["name"])  # --event-ttl
    clock.advance(3601)
    assert rec.record(JOB, "Waiting", "m") == "posted"  # gone: a new Event, a new series
    event = server.only()
    assert event["count"] == 1
    assert event["firstTimestamp"] == events.rfc3339(START + 7202)


def test_repeats_arriving_while_the_event_is_written_are_folded_into_the_next_write() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    server.hold = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(rec.record, JOB, "Waiting", "m")
        assert server.entered.wait(10)  # the POST is in flight
        assert [rec.record(JOB, "Waiting", "m") for _ in range(999)] == ["coalesced"] * 999
        server.hold.set()
        assert first.result(10) == "posted"
    assert server.verbs() == ["POST", "PATCH"]
    assert server.only()["count"] == 1000


def test_many_threads_lose_no_occurrence() -> None:
    server, clock = FakeTransport(), ManualClock(START)
    rec = recorder(server, clock)
    jobs = [("ComputeJob", "team-a", f"job-{i}", f"uid-{i}") for i in range(20)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda job: rec.record(job, "Waiting", "m"), jobs * 50))
    assert "failed" not in outcomes and "dropped" not in outcomes
    assert sorted(e["count"] for e in server.stored.values()) == [50] * 20
    assert len(server.requests) <= 20 * 50


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="size >= 1"):
        events.EventRecorder(FakeTransport(), size=0)


# --- Api.event: the scheduler's entry point ------------------------------------------------


@pytest.fixture
def api() -> Any:
    client = client_mod.Api(object(), workers=1, events_namespace="suanli-system", instance="suanli-7d9f-abcde")
    yield client
    client.close()


def test_api_event_keeps_its_signature_and_aggregates(api: Any) -> None:
    server = FakeTransport()
    api.events.send = server
    for _ in range(3):
        api.event(JOB, "BindFailed", "Job create refused", True, START)
    event = server.only()
    assert (event["count"], event["type"], event["reason"]) == (3, "Warning", "BindFailed")
    assert event["lastTimestamp"] == events.rfc3339(START)
    assert event["reportingComponent"] == "suanli"
    assert event["reportingInstance"] == "suanli-7d9f-abcde"
    assert event["source"] == {"component": "suanli", "host": "suanli-7d9f-abcde"}


def test_api_event_about_a_cluster_scoped_object_goes_to_the_events_namespace(api: Any) -> None:
    server = FakeTransport()
    api.events.send = server
    api.event({"kind": "ComputeCenter", "metadata": {"name": "c1", "uid": "u"}}, "Ready", "3 pools")
    assert server.requests[0][1] == "/api/v1/namespaces/suanli-system/events"
    assert server.requests[0][2]["involvedObject"]["namespace"] is None


def test_api_event_never_raises(api: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError("connection reset by peer")

    api.events.send = broken
    assert api.event(JOB, "Bound", "bound to c1/a100") is None


def test_an_event_in_a_namespace_being_deleted_is_dropped_quietly(caplog: Any) -> None:
    """The API server refuses new content in a terminating namespace (403); the object goes with it, and
    nobody can read the Event: no warning (it read as an RBAC refusal in the chart-identity e2e test)
    and no write error counted."""
    from tests.unit import test_write_priority as wp

    transport, clock = FakeTransport(), ManualClock(1_800_000_000.0)
    real = transport.__call__

    def refusing(method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        if method == "POST":
            raise wp.terminating("team-a")
        return real(method, path, body, **kwargs)

    rec = events.EventRecorder(refusing, now=clock.now)
    before = sample("suanli_api_write_errors_total", {"verb": "create", "resource": "events"})
    with caplog.at_level(logging.WARNING, logger="suanli.kube.events"):
        assert rec.record(("ComputeJob", "team-a", "j", "uid-1"), "Requeued", "back in the queue") == "failed"
    assert caplog.records == []
    assert sample("suanli_api_write_errors_total", {"verb": "create", "resource": "events"}) == before
