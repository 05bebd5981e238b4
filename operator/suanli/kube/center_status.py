"""ComputeCenter status: per-pool accounting, energy of the current budget period, Ready/Degraded,
written when it changed, batched over operator.status_coalesce_seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from suanli import settings as settings_mod
from suanli.kube import errors
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import status as status_mod

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod

LOG = logging.getLogger("suanli.scheduler.centers")


async def batched(event: asyncio.Event, op: settings_mod.OperatorSettings, write: Callable[[], Awaitable[None]],
                  kind: str) -> None:
    """Run `write` when `event` is set (or every operator.resync_seconds), after
    operator.status_coalesce_seconds, so a burst of changes makes one pass; a failed pass is logged."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=op.resync_seconds)
        await asyncio.sleep(op.status_coalesce_seconds)
        event.clear()
        try:
            await write()
        except Exception:
            LOG.exception("could not update %s status", kind)


async def patch_if_changed(api: Any, patch: Callable[[str, dict[str, Any]], None], kind: str, name: str,
                           raw: dict[str, Any], current: Mapping[str, Any], new: dict[str, Any]) -> None:
    """Write a cluster-scoped object's status when it differs from `current` (transition times aside) and
    keep it in `raw`, the cached object; a failed write is logged and retried on the next pass."""
    if not status_mod.center_changed(dict(current), new):
        return
    try:
        await api.run(patch, name, new)
        raw["status"] = new
    except Exception as exc:
        LOG.warning("could not update the status of %s %s: %s", kind, name, errors.short(exc))


class CenterStatus:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx

    async def run(self) -> None:
        await batched(self.ctx.centers_event, self.ctx.settings.operator, self.write, "ComputeCenter")

    async def write(self) -> None:
        ctx = self.ctx
        now = ctx.clock.now()
        snap = ctx.cache.snapshot(now)
        ctx.publish(snap)
        by_center = snapshot_mod.usage_by_center(snap)
        accounts = {a.name: a for a in snap.energy.accounts()}
        for name in sorted(set(ctx.cache.center_raw)):
            raw = ctx.cache.center_raw[name]
            meta = raw.get("metadata") or {}
            problem = ctx.cache.center_errors.get(name)
            current = dict(raw.get("status") or {})
            new = status_mod.center(
                name, meta.get("generation"), by_center.get(name, []), accounts.get(name), problem, current, now,
                member=ctx.cache.member_state.problems.get(name),
            )
            await patch_if_changed(ctx.api, ctx.api.patch_center_status, "ComputeCenter", name, raw, current, new)
