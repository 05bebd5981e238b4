"""What a job's status says when its bound attempt ends without finishing, and which Event goes with it.

Pure: the lifecycle (`kube/lifecycle.py`) has stopped the attempt (its Job deleted, no pod of it can
still run) and asks `ending` for the status patch:

- Suspended (spec.suspend): phase Suspended, `status.suspensions` counted;
- Retried (spec.retry: the gang failed with an exit code it retries, runs left): back to the queue
  after the requeue backoff, `status.retries` counted;
- otherwise the operator's requeue (pods not ready in time, a replica lost, its Job deleted, Preempted,
  MemberLost): back to the queue after a doubling backoff, `status.requeues` counted, or Failed at
  `operator.requeue_limit`.

Suspensions and retries never count against `operator.requeue_limit`. The attempt is listed in
`status.attempts` with how it ended; the energy it used since it ran goes to `status.endedAttempts`.
"""

from __future__ import annotations

from typing import Any

from suanli import settings as settings_mod
from suanli.kube import objects as kobj
from suanli.kube import records, workqueue
from suanli.kube import settled as settled_mod
from suanli.kube.status import attempt, condition, rfc3339, settled_energy, unbound, with_attempt

SUSPENDED = "Suspended"
RETRIED = "Retried"


MAX_ENDED_ATTEMPTS = 100
SUMMED = ("kWh", "carbonKg", "cost", "acceleratorHours")


def ended_attempts(previous: Any, center: str, queue: str | None, used: settled_mod.Amounts, now: float,
                   code: str) -> list[dict[str, Any]]:
    """status.endedAttempts with the attempt ending now added (when it used energy); past
    MAX_ENDED_ATTEMPTS the two oldest are folded into one (their sums kept)."""
    out = [dict(a) for a in previous or [] if isinstance(a, dict)]
    if used.kwh > 0:
        out.append({"center": center, "queue": queue, "kWh": round(used.kwh, 9), "carbonKg": round(used.carbon_kg, 9),
                    "cost": round(used.cost, 9), "acceleratorHours": round(used.accelerator_hours, 9),
                    "ended": rfc3339(now), "reason": code})
    while len(out) > MAX_ENDED_ATTEMPTS:
        first, second = out[0], out[1]
        out[1] = {**second, **{k: float(first.get(k) or 0) + float(second.get(k) or 0) for k in SUMMED}}
        del out[0]
    return out


def requeued(reason: str, requeues: int, limit: int, requeue_at: float, generation: int | None, now: float,
             code: str = "AttemptEnded", ended: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Back to the queue after a bound attempt ended without finishing (requeue `requeues` of `limit`);
    `code`: the Requeued condition's reason (MemberLost: the member cluster it ran in is lost); a
    preempted attempt's condition is `Preempted` (its message names the preemptor)."""
    message = (
        f"{reason}; back in the queue (attempt {requeues} of {limit} ended), not planned before {rfc3339(requeue_at)}"
    )
    return {
        **unbound(message, generation),
        "startTime": None,
        "plannedStart": None,
        "requeues": requeues,
        "requeueAt": rfc3339(requeue_at),
        **({"endedAttempts": ended} if ended is not None else {}),
        "conditions": [condition("Preempted" if code == "Preempted" else "Requeued", True, code, message, now, generation)],
    }


def retried(reason: str, retries: int, max_attempts: int, requeue_at: float, generation: int | None, now: float,
            ended: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Back to the queue to run again as a whole: its run `retries` of `max_attempts` failed with an exit
    code spec.retry retries."""
    message = (f"{reason}; run {retries} of {max_attempts} (spec.retry.maxAttempts) failed, running it again as a "
               f"whole, not planned before {rfc3339(requeue_at)}")
    return {
        **unbound(message, generation),
        "startTime": None,
        "plannedStart": None,
        "retries": retries,
        "requeueAt": rfc3339(requeue_at),
        **({"endedAttempts": ended} if ended is not None else {}),
        "conditions": [condition("Retried", True, "RetryOnExitCode", message, now, generation)],
    }


def suspended(generation: int | None, now: float, suspensions: int | None = None,
              ended: list[dict[str, Any]] | None = None, where: str = "") -> dict[str, Any]:
    """Suspended by spec.suspend: nothing held, nothing running. For a job that was bound, `suspensions`
    and `ended` (the energy it used so far) are written too; `where` says where it ran."""
    message = ("suspended by spec.suspend" + (f"; its attempt on {where} was stopped, its accelerators and energy "
                                              "reservation released" if where else "")
               + "; set spec.suspend to false to put it back in the queue")
    return {
        **unbound(message, generation),
        "phase": "Suspended",
        "startTime": None,
        "plannedStart": None,
        "requeueAt": None,
        **({"suspensions": suspensions} if suspensions is not None else {}),
        **({"endedAttempts": ended} if ended is not None else {}),
        "conditions": [condition("Suspended", True, "SuspendedBySpec", message, now, generation)],
    }


def gave_up(reason: str, requeues: int, generation: int | None, now: float,
            ended: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Failed: the job's last allowed attempt ended without finishing (operator.requeue_limit). Its
    reservation goes with the binding; no energy is settled for attempts that never completed."""
    message = f"{reason}; gave up after {requeues} attempt(s) (operator.requeue_limit)"
    return {
        "phase": "Failed",
        "message": message,
        "requeues": requeues,
        "requeueAt": None,
        "completionTime": rfc3339(now),
        "energy": {"kWh": 0.0, "carbonKg": 0.0, "source": "estimate", "reason": "no attempt ran to completion"},
        **({"endedAttempts": ended} if ended is not None else {}),
        "observedGeneration": generation,
        "conditions": [condition("Failed", True, "RequeueLimitReached", message, now, generation)],
    }


def with_used(record: records.JobRecord, binding: records.Binding | None, figures: tuple[float, float, str | None],
              now: float, code: str) -> list[dict[str, Any]]:
    """status.endedAttempts with the attempt ending now: the energy its replicas used since they all ran
    (phase Running: status.startTime), as a finished run's estimate is settled (board power x PUE) with
    `figures` = its pool's (watts, PUE, why they are missing); 0 when it never ran or its pool has left
    the fleet."""
    previous = record.status.get("endedAttempts")
    started = kobj.parse_time(record.status.get("startTime")) if record.phase == "Running" else None
    if binding is None or started is None:
        return ended_attempts(previous, "", None, settled_mod.ZERO, now, code)
    power, pue, missing = figures
    kwh, carbon = (0.0, 0.0) if missing else settled_energy(binding, now - started, power, pue)
    used = settled_mod.Amounts(kwh, carbon, kwh * records.price_per_kwh(record.status),
                               max(0.0, now - started) / 3600 * binding.replicas * binding.count)
    return ended_attempts(previous, binding.center, binding.queue, used, now, code)


def ending(record: records.JobRecord, binding: records.Binding | None, reason: str, code: str,
           exit_code: int | None, ended: list[dict[str, Any]], now: float,
           op: settings_mod.OperatorSettings) -> tuple[dict[str, Any], str]:
    """(status patch, Event reason) for the job's bound attempt, ended now for `reason` (`code`: Suspended,
    Retried, Preempted, MemberLost, or AttemptEnded); `ended`: its status.endedAttempts with this attempt."""
    requeues, retries = record.requeues + 1, record.retries + 1
    # Suspensions and retries are not counted against operator.requeue_limit.
    if code == SUSPENDED:
        where = f"{binding.center}/{binding.pool}" if binding is not None else "its pool"
        event, patch = code, suspended(record.generation, now, record.suspensions + 1, ended, where)
    elif code == RETRIED:
        backoff = workqueue.doubling(op.requeue_backoff_seconds, op.requeue_backoff_max_seconds, retries)
        event, patch = code, retried(reason, retries, record.retry_policy[0], now + backoff, record.generation, now,
                                     ended)
    elif requeues >= op.requeue_limit:
        event, patch = "Failed", gave_up(reason, requeues, record.generation, now, ended)
    else:
        backoff = workqueue.doubling(op.requeue_backoff_seconds, op.requeue_backoff_max_seconds, requeues)
        event = code if code in ("MemberLost", "Preempted") else "Requeued"
        patch = requeued(reason, requeues, op.requeue_limit, now + backoff, record.generation, now, code, ended)
    # The attempt that ended, listed with how it ended (always written: it replaces a count there).
    entry = attempt(binding, now, event, patch["message"], exit_code) if binding is not None else None
    patch["attempts"] = with_attempt(record.history, entry)
    return patch, event
