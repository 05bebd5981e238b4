"""core/v1 Events, aggregated the way client-go's recorder does it (its EventCorrelator, in Python).

An occurrence is keyed by the involved object (kind, namespace, name, uid) and the Event's type,
reason and message. The first occurrence POSTs an Event named `<object name>.<hash of the key>`;
repeats PATCH (merge patch) that one Event's `count` and `lastTimestamp`. A job retrying for a
day leaves one Event per distinct message, not one per retry.

- Memory is bounded: the series (one per key) live in an LRU of `size` keys. A key evicted from it,
  or not seen for `window` seconds, or seen first by a restarted operator, POSTs again; the name
  is the same, so the POST answers 409 and the recorder reads the Event and continues its count.
- A PATCH answering 404 (the API server's --event-ttl expired the Event, or someone deleted it)
  POSTs it again, count and firstTimestamp continuing.
- Spam filter: each involved object has a token bucket (`burst` tokens, one more every `refill`
  seconds). Only a *new* Event takes a token, never a repeat: an object whose messages keep
  changing cannot create Events without bound. An occurrence refused is counted in
  `suanli_events_dropped_total` and written nowhere.
- Thread-safe (the write pool calls it from many threads): one lock guards the LRUs; requests are
  made outside it. One writer per series at a time: an occurrence arriving while its series is
  being written only raises the count, and the writer writes the new count when its request ends
  (a burst of N repeats costs far fewer than N PATCHes; no count is lost).
- Never raises: a failed write is logged and counted in `suanli_api_write_errors_total{resource=
  "events"}`; its occurrences are written with the next repeat.

No sleeps and no clock of its own: `now` (seconds) is injected, tests move it.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol
from urllib.parse import quote

from kubernetes.client.exceptions import ApiException

from suanli import api, metrics
from suanli.kube import errors

LOG = logging.getLogger("suanli.kube.events")
COMPONENT = "suanli"
MERGE_PATCH = "application/merge-patch+json"
MESSAGE_CHARS = 1000  # longer messages are cut; the key uses the message as written
NAME_CHARS = 200  # of the involved object's name in the Event's name (253 at most, with the hash)
MAX_STALLED = 4  # rounds of requests in a row that write nothing before a write is given up

Outcome = Literal["posted", "patched", "coalesced", "dropped", "failed"]


class Send(Protocol):
    """One API request (suanli.kube.client.Api.request): the decoded answer, ApiException on an error."""

    def __call__(self, method: str, path: str, body: Any = None, *, content_type: str = ..., decode: bool = ...) -> Any: ...


@dataclasses.dataclass(frozen=True)
class Key:
    """What makes two occurrences the same Event (client-go's aggregate key, minus the source)."""

    kind: str
    namespace: str
    name: str
    uid: str
    type: str
    reason: str
    message: str

    @property
    def involved(self) -> tuple[str, str, str, str]:
        """The involved object: what the spam filter's bucket belongs to."""
        return (self.kind, self.namespace, self.name, self.uid)

    def event_name(self) -> str:
        """`<object name>.<16 hex of sha256 of the key>`: the same for every replica and restart."""
        digest = hashlib.sha256("\x00".join(dataclasses.astuple(self)).encode("utf-8")).hexdigest()[:16]
        return f"{self.name[:NAME_CHARS]}.{digest}"


@dataclasses.dataclass
class _Series:
    """One Event as this recorder knows it; fields guarded by the recorder's lock."""

    namespace: str  # where the Event lives
    name: str
    count: int = 0  # occurrences, including those not written yet
    written: int = 0  # the count the API server has from us (0: nothing written yet)
    first: str = ""  # firstTimestamp
    last: str = ""  # lastTimestamp (of the latest occurrence)
    seen: float = 0.0  # recorder clock at the latest occurrence
    posted: bool = False  # the Event exists (as far as we know): repeats PATCH it
    busy: bool = False  # a thread is writing it


@dataclasses.dataclass
class _Bucket:
    tokens: float
    at: float  # recorder clock of the last refill


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Aggregating, rate-limited Event writer; see the module docstring.

    `size`: series (and per-object buckets) remembered, LRU; 4,096 as client-go's
    (maxLruCacheEntries): a few MB at most, messages being cut at 1,000 characters.
    `window`: seconds after a key's latest occurrence within which a repeat continues the series
    from memory; later, the API server's state decides (409: continue its count; gone: a new
    Event). One hour: the API server's default --event-ttl, after which the Event is likely gone.
    `burst`, `refill`: the spam filter, new Events per object: 25 at once, then one per 300 s —
    client-go's defaults (defaultSpamBurst, defaultSpamQPS = 1/300).
    `instance`: the replica writing (its leader-election identity): `reportingInstance` and
    `source.host` of every Event it writes or patches.
    `now`: the clock (seconds) for the window, the buckets and Events recorded without a time.
    """

    def __init__(
        self,
        send: Send,
        *,
        default_namespace: str = "default",
        instance: str = "",
        size: int = 4096,
        window: float = 3600.0,
        burst: int = 25,
        refill: float = 300.0,
        now: Callable[[], float] = time.time,
    ):
        if size < 1 or burst < 1 or refill <= 0 or window < 0:
            raise ValueError("EventRecorder needs size >= 1, burst >= 1, refill > 0 and window >= 0")
        self.send = send
        self.default_namespace = default_namespace
        self.instance = instance
        self.size, self.window, self.burst, self.refill = size, window, burst, refill
        self.now = now
        self._lock = threading.Lock()
        self._series: collections.OrderedDict[Key, _Series] = collections.OrderedDict()
        self._buckets: collections.OrderedDict[tuple[str, str, str, str], _Bucket] = collections.OrderedDict()

    def __len__(self) -> int:
        """Series remembered (at most `size`)."""
        return len(self._series)

    # --- recording -------------------------------------------------------------------

    def record(
        self,
        involved: tuple[str, str, str, str],
        reason: str,
        message: str,
        warning: bool = False,
        at: float | None = None,
    ) -> Outcome:
        """One occurrence about `involved` (kind, namespace, name, uid); `at`: its time in seconds
        (default: the recorder's clock). What became of it: written as a new Event ("posted"), as a
        repeat ("patched"), left to the write in flight ("coalesced"), refused by the spam filter
        ("dropped") or not written for an error, logged ("failed"). Never raises."""
        kind, namespace, name, uid = involved
        key = Key(kind, namespace, name, uid, "Warning" if warning else "Normal", reason, message[:MESSAGE_CHARS])
        clock = self.now()
        stamp = rfc3339(clock if at is None else at)
        with self._lock:
            series = self._series.get(key)
            if series is None or clock - series.seen > self.window:
                if not self._take(key.involved, clock):
                    metrics.EVENTS_DROPPED.inc()
                    LOG.debug("event %s on %s %s/%s dropped: the object's Event budget is spent", reason, kind, namespace, name)
                    return "dropped"
                if series is None or not series.busy:
                    series = _Series(namespace or self.default_namespace, key.event_name(), first=stamp)
                    self._series[key] = series
                    while len(self._series) > self.size:
                        self._series.popitem(last=False)
                # else: a new series while the old one is being written: let its writer carry on.
            self._series.move_to_end(key)
            series.count += 1
            series.last, series.seen = stamp, clock
            if series.busy:
                return "coalesced"
            series.busy = True
        return self._write(key, series)

    def _take(self, involved: tuple[str, str, str, str], clock: float) -> bool:
        """One token of the object's bucket, if it has one (lock held)."""
        bucket = self._buckets.get(involved)
        if bucket is None:
            bucket = self._buckets[involved] = _Bucket(float(self.burst), clock)
            while len(self._buckets) > self.size:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, clock - bucket.at) / self.refill)
            bucket.at = max(bucket.at, clock)
            self._buckets.move_to_end(involved)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    # --- writing ---------------------------------------------------------------------

    def _write(self, key: Key, series: _Series) -> Outcome:
        """Write the series until the API server has its latest count (this thread is its writer)."""
        outcome: Outcome = "patched" if series.posted else "posted"
        verb, stalled = "create", 0
        try:
            while True:
                with self._lock:
                    if series.written >= series.count:
                        series.busy = False
                        return outcome
                    posted, count, first, last, written = (
                        series.posted, series.count, series.first, series.last, series.written
                    )
                if stalled >= MAX_STALLED:  # e.g. POST says 409 and GET says 404, over and over
                    raise RuntimeError(f"no progress after {stalled} rounds of requests")
                if posted:
                    verb = "patch"
                    posted = self._patch(series, count, last)
                if not posted:
                    verb = "create"
                    self._post(key, series, count, first, last)
                with self._lock:
                    stalled = 0 if series.written > written else stalled + 1
        except Exception as exc:
            with self._lock:
                series.busy = False
            if errors.namespace_gone(exc):
                # The namespace is being deleted, with the object: nobody can read an Event there any more.
                LOG.debug("event %s on %s %s/%s dropped: namespace %s is being deleted", key.reason, key.kind,
                          key.namespace, key.name, series.namespace)
                return "failed"
            metrics.API_WRITE_ERRORS.labels(verb=verb, resource="events").inc()
            LOG.warning(
                "could not %s event %s on %s %s/%s: %s",
                verb, key.reason, key.kind, key.namespace, key.name, getattr(exc, "reason", None) or exc,
            )
            return "failed"

    def _path(self, series: _Series, name: str = "") -> str:
        path = f"/api/v1/namespaces/{quote(series.namespace)}/events"
        return f"{path}/{quote(name)}" if name else path

    def _reporter(self) -> dict[str, Any]:
        """Who writes: the component, and the replica when known."""
        if not self.instance:
            return {"source": {"component": COMPONENT}, "reportingComponent": COMPONENT}
        return {
            "source": {"component": COMPONENT, "host": self.instance},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
        }

    def _patch(self, series: _Series, count: int, last: str) -> bool:
        """PATCH count and lastTimestamp; False if the Event is gone (404), so it must be posted."""
        body = {"count": count, "lastTimestamp": last, **(self._reporter() if self.instance else {})}
        try:
            self.send("PATCH", self._path(series, series.name), body, content_type=MERGE_PATCH, decode=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
            LOG.debug("event %s/%s is gone (expired or deleted); posting it again", series.namespace, series.name)
            with self._lock:
                series.posted = False
            return False
        with self._lock:
            series.written = max(series.written, count)
        return True

    def _post(self, key: Key, series: _Series, count: int, first: str, last: str) -> None:
        """POST the Event; on 409 (it exists: a restart, an eviction, a window passed) read it and
        continue its count (the next turn of `_write` PATCHes it)."""
        body = {
            "metadata": {"name": series.name, "namespace": series.namespace},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": key.kind,
                "name": key.name,
                "namespace": key.namespace or None,
                "uid": key.uid,
            },
            "reason": key.reason,
            "message": key.message,
            "type": key.type,
            "firstTimestamp": first,
            "lastTimestamp": last,
            "count": count,
            **self._reporter(),
        }
        try:
            self.send("POST", self._path(series), body, decode=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
            try:
                existing = self.send("GET", self._path(series, series.name))
            except ApiException as gone:
                if gone.status != 404:
                    raise
                return  # expired between the two requests: the next round posts it again
            with self._lock:
                series.count += int((existing or {}).get("count") or 1)
                series.first = str((existing or {}).get("firstTimestamp") or series.first)
                series.posted = True
            return
        with self._lock:
            series.posted = True
            series.written = max(series.written, count)
