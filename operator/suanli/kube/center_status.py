"""ComputeCenter status: per-pool accounting, energy of the current budget period, Ready/Degraded,
written when it changed, batched over operator.status_coalesce_seconds."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from suanli.kube import errors
from suanli.kube import snapshot as snapshot_mod
from suanli.kube import status as status_mod

if TYPE_CHECKING:
    from suanli.kube import scheduler as scheduler_mod

LOG = logging.getLogger("suanli.scheduler.centers")


class CenterStatus:
    def __init__(self, ctx: scheduler_mod.Scheduler):
        self.ctx = ctx

    async def run(self) -> None:
        ctx = self.ctx
        op = ctx.settings.operator
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.centers_event.wait(), timeout=op.resync_seconds)
            await asyncio.sleep(op.status_coalesce_seconds)
            ctx.centers_event.clear()
            try:
                await self.write()
            except Exception:
                LOG.exception("could not update ComputeCenter status")

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
                member=ctx.cache.member_problems.get(name),
            )
            if not status_mod.center_changed(current, new):
                continue
            try:
                await ctx.api.run(ctx.api.patch_center_status, name, new)
                raw["status"] = new
            except Exception as exc:
                LOG.warning("could not update the status of ComputeCenter %s: %s", name, errors.short(exc))
