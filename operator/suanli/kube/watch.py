"""Plain watch streams for the kinds that bring the bulk of the events: pods, batch Jobs and
ComputeJobs.

kopf runs every watch event through its whole handler machinery (bodies, loggers, causes,
handler state, keyword arguments): about 0.56 ms of CPU per event before any Suanli code runs
(`reports/bench/operator-events.md`), and a job brings a dozen or so events in its life (its
ComputeJob about four, its Job and pods the rest). Reading the stream and calling the same
mirror handler costs about a sixth of that. ComputeCenters and Nodes, few and slow-changing,
stay with kopf.

Each kind is one `Watcher`: a thread follows the WATCH (through the API client's auth, TLS and
connection pool) and hands each chunk's events to the event loop, where the mirror handler
applies them in order, exactly as kopf delivered them before. The first WATCH starts at the
resourceVersion of the LIST that primed the cache, so nothing falls between the two and nothing
is listed twice. When the server ends a stream (every `timeout_seconds`), the next one resumes
from the last version seen (bookmarks included). When that version is too old (410 Gone) the
watcher LISTs again, hands the handler every listed object and a DELETED event for every cached
one the LIST no longer has, and watches from the LIST's version. Other errors back off, 1 s
doubling to 30 s, and never stop the watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from suanli.kube import cache as cache_mod
from suanli.kube import client as client_mod
from suanli.kube import relist

LOG = logging.getLogger("suanli.watch")
T = TypeVar("T")
# relist / client kind names: pods, batch Jobs, ComputeJobs, and DRA's DeviceClasses, ResourceSlices, ResourceClaims
KINDS = ("pods", "workloads", "jobs", "deviceclasses", "slices", "claims")
MAX_BACKOFF_S = 30.0
NOT_SERVED_RETRY_S = 300.0  # a kind the cluster does not serve (DRA before 1.34): how often to look again


class Gone(Exception):
    """The resourceVersion to watch from is no longer available (HTTP 410): LIST again."""


class Watcher:
    def __init__(
        self,
        api: client_mod.Api,
        kind: str,
        cache: cache_mod.Cache,
        handler: Callable[[dict[str, Any], Any], None],
        memo: Any,
        resource_version: str = "",
        timeout_seconds: int = 60,
        cluster: str = "",
        listed: Callable[[str], None] | None = None,
    ):
        """`cluster`: the member center whose cluster `api` reaches ("": the operator's own); `handler`
        mirrors that cluster's objects; `listed(kind)` is called after each LIST has been mirrored."""
        self.api, self.kind, self.cache, self.handler, self.memo = api, kind, cache, handler, memo
        self.cluster, self.listed = cluster, listed
        self.resource_version = resource_version
        self.timeout_seconds = timeout_seconds
        self._stop = threading.Event()

    async def run(self) -> None:
        """Follow the kind until cancelled."""
        loop = asyncio.get_running_loop()
        delay = 1.0
        try:
            while True:
                try:
                    if not self.resource_version:
                        self.resource_version = await self._resync(loop)
                        if self.listed is not None:
                            self.listed(self.kind)
                    started, before = loop.time(), self.resource_version
                    await self._in_thread(loop, self._follow, loop)
                    delay = 1.0
                    if loop.time() - started < 1.0 and self.resource_version == before:
                        await asyncio.sleep(1.0)  # an empty stream ended at once: do not spin on the server
                except client_mod.NotServed as exc:
                    LOG.log(logging.INFO if delay < NOT_SERVED_RETRY_S else logging.DEBUG,
                            "watch of %s%s: %s; DRA pools there count no devices (looking again every %gs)",
                            self.kind, self._where(), exc, NOT_SERVED_RETRY_S)
                    delay = NOT_SERVED_RETRY_S  # logged once, until it is served
                    self.resource_version = ""
                    if self.listed is not None:
                        self.listed(self.kind)  # the cluster has none of them: that is the whole LIST
                    await asyncio.sleep(NOT_SERVED_RETRY_S)
                except Exception as exc:
                    # 410 Gone: as an ERROR event in the stream, or as the answer to the request itself.
                    if isinstance(exc, Gone) or (isinstance(exc, ApiException) and exc.status == 410):
                        LOG.info("watch of %s%s: resourceVersion %s is too old; listing again", self.kind,
                                 self._where(), self.resource_version)
                        self.resource_version = ""
                        continue
                    LOG.warning("watch of %s%s failed (retrying in %gs): %s", self.kind, self._where(), delay,
                                str(exc)[:300])
                    await asyncio.sleep(delay)
                    delay = min(MAX_BACKOFF_S, delay * 2)
        finally:
            self._stop.set()  # the thread leaves at its next chunk, or when the server ends the stream

    def _where(self) -> str:
        return f" in member cluster {self.cluster}" if self.cluster else ""

    def _in_thread(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` in a daemon thread of its own: a stream blocked in a read (up to
        `timeout_seconds`) must never hold up the process's exit, as an executor's threads would."""
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():  # cancelled meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

        def target() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=target, name=f"suanli-watch-{self.kind}", daemon=True).start()
        return future

    def _follow(self, loop: asyncio.AbstractEventLoop) -> str:
        """One WATCH request, in the watcher's thread; returns the last resourceVersion seen (also
        kept in `resource_version` as it goes, so a failed stream resumes after what was delivered)."""
        for chunk in self.api.watch(self.kind, self.resource_version, self.timeout_seconds):
            if self._stop.is_set():
                break
            events, error = [], None
            for event in chunk:
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    error = obj
                    break
                if kind != "BOOKMARK":
                    events.append(event)
                self.resource_version = (obj.get("metadata") or {}).get("resourceVersion") or self.resource_version
            if events:
                loop.call_soon_threadsafe(self._deliver, events)
            if error is not None:
                if error.get("code") == 410:
                    raise Gone(str(error.get("message", "")))
                raise RuntimeError(f"watch error {error.get('code')}: {error.get('message', error)}")
        return self.resource_version

    def _deliver(self, events: list[dict[str, Any]]) -> None:
        """On the event loop: the mirror handler, event by event (one bad object never stops the rest)."""
        if self._stop.is_set():
            return
        for event in events:
            try:
                self.handler(event, self.memo)
            except Exception:
                meta = (event.get("object") or {}).get("metadata") or {}
                LOG.exception("could not mirror the %s event of %s %s/%s", event.get("type"), self.kind,
                              meta.get("namespace", ""), meta.get("name", ""))

    async def _resync(self, loop: asyncio.AbstractEventLoop) -> str:
        """LIST in pages, mirror every object, drop cached ones the LIST no longer has; the LIST's version."""
        before = relist.cached_keys(self.cache, self.kind, self.cluster)
        listed: set[tuple[str, str]] = set()
        token, version = "", ""
        while True:
            items, token, page_version = await self._in_thread(loop, self.api.page, self.kind, token)
            version = version or page_version
            for raw in items:
                meta = raw.get("metadata") or {}
                listed.add((meta.get("namespace") or "", meta.get("name") or ""))
            self._deliver([{"type": "MODIFIED", "object": raw} for raw in items])
            if not token:
                break
        gone = sorted((before & relist.cached_keys(self.cache, self.kind, self.cluster)) - listed)
        self._deliver([relist.deleted_event(self.cache, self.kind, key, cluster=self.cluster) for key in gone])
        if gone:
            LOG.info("watch of %s: %d objects were deleted while the watch was down", self.kind, len(gone))
        return version
