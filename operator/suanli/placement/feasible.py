"""Which pools a job could ever use: the filters no change of load can lift (accelerator type, model,
precision, memory, region; with `gang=True` also a gang larger than the pool), evaluated for many jobs
at once on the idle fleet. The simulator files waiting jobs by it; the operator sets aside waiting
jobs none of whose pools has room now (kube/set_aside.py).

Pure.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from suanli import settings as settings_mod
from suanli.scoring import demand as demand_mod
from suanli.scoring import engine
from suanli.scoring import fleet as fleet_mod

CHUNK = 2048  # jobs scored at once: bounded memory however long the queue
# Everything PERMANENT but the gang's size: that is judged against the pools' expected node size,
# which real nodes may exceed; a caller that looks at the real free slots checks the size itself.
NOT_THE_GANG = engine.PERMANENT & ~engine.Reject.NEVER_FITS


def pools(
    fleet: fleet_mod.Fleet, jobs: Sequence[demand_mod.JobDemand], config: settings_mod.Settings, gang: bool = True
) -> npt.NDArray[np.bool_]:
    """(J, P): the pools each job could ever use, scored at once on an idle fleet. `gang=False`
    leaves the gang's size to the caller (see NOT_THE_GANG)."""
    out = np.zeros((len(jobs), fleet.size), dtype=np.bool_)
    idle = fleet_mod.idle_state(fleet)
    mask = int(engine.PERMANENT if gang else NOT_THE_GANG)
    for lo in range(0, len(jobs), CHUNK):
        part = list(jobs[lo : lo + CHUNK])
        batch = demand_mod.batch(part, fleet, config.scoring.reference_pue)
        starts = np.array([j.arrival_epoch for j in part])
        ev = engine.evaluate(fleet, idle, batch, starts, config.scoring)
        out[lo : lo + len(part)] = (ev.reasons & mask) == 0
    return out


def room(usable: npt.NDArray[np.bool_], ready: npt.NDArray[np.bool_], slots: npt.NDArray[np.int64],
         replicas: int, count: int) -> bool:
    """Whether a pool in `usable` is `ready` with room for a gang of `replicas` x `count` now
    (`slots[p, c]`: replicas of c accelerators that fit on pool p)."""
    return count < slots.shape[1] and bool((usable & ready & (slots[:, count] >= replicas)).any())
