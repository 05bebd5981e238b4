"""What to do with a bound attempt of a job, from what the cache sees of it. Pure: no I/O, no clock.

A bound job is one attempt: its binding, the batch Job made for it and that Job's pods (labelled
with the ComputeJob's uid and the attempt, `workloads.LABEL_ATTEMPT`). `assess` looks at them and
says what the lifecycle does next, in this order:

1. The Job finished: Succeeded, or Failed with the application's reason (a container that exited
   non-zero) unless spec.retry runs it again (`retried`: back to the queue as a whole, code
   Retried), or — when a replica was lost to a disruption — back to the queue.
2. The member cluster it runs in is lost (unreachable for `members.lost_after_seconds`): back to
   the queue, reason MemberLost (its Job there is deleted when the member is back).
3. A replica was lost (a `DisruptionTarget` condition: node lost, eviction, preemption; or its pod
   deleted before it finished) and no replica failed on its own: the whole gang goes back to the
   queue (possibly elsewhere). An application failure always wins over a loss (when one replica
   fails, the Job controller deletes the others: those deletions are not disruptions).
4. No Job: a Running job's Job was deleted (requeue); so was a Bound job's when pods of the attempt
   are left without it; otherwise (a restart between the binding and the Job) the Job is created.
5. Bound, not all replicas running: back to the queue at once when a replica can never start where
   it was placed (`stranded`: its node gone or out of the pool, `gates.stranded`). A Job the Job
   controller started (`status.startTime`) without making any pod for `remake_after` seconds is
   deleted and made again (`remake`, once per attempt: the Job controller can hold back the pods of
   a Job it takes for an earlier one of the same name for minutes, and forgets that with the Job).
   Otherwise wait until `pods_ready_timeout` after the binding, then requeue.
6. Otherwise the status follows the Job (`status.progress`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from suanli.kube import objects as kobj
from suanli.kube import records

Action = Literal["progress", "ensure", "requeue", "wait", "remake"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""  # requeue, remake: why, for a person
    code: str = "AttemptEnded"  # requeue: the reason of its Requeued condition (MemberLost: its member cluster is lost)
    at: float | None = None  # wait: when to look again (epoch)
    exit_code: int | None = None  # requeue: the exit code that ended the run (Retried)


PROGRESS = Verdict("progress")


def ready_replicas(pods: Sequence[kobj.PodInfo]) -> int:
    """Replicas of the attempt that are running or finished successfully on a node."""
    return sum(1 for p in pods if p.node is not None and p.phase in ("Running", "Succeeded") and not p.deleting)


def application_failure(pods: Sequence[kobj.PodInfo]) -> str | None:
    """A replica that failed on its own (not disrupted), for a person; None if none did."""
    return next((p.failure for p in pods if p.failure and p.disruption is None), None)


def retried(pods: Sequence[kobj.PodInfo], retry: tuple[int, tuple[int, ...]], retries: int) -> tuple[str, int] | None:
    """(why, exit code) when the gang failed on its own with an exit code spec.retry retries, `retry` =
    (maxAttempts, onExitCodes), and it has runs left (`retries` of them used); else None. An empty list
    retries any non-zero code."""
    max_attempts, codes = retry
    if max_attempts <= 1 or retries + 1 >= max_attempts:
        return None
    failed = next((p for p in pods if p.failure and p.disruption is None and p.exit_code is not None), None)
    if failed is None or failed.exit_code is None or (codes and failed.exit_code not in codes):
        return None
    return failed.failure or "", failed.exit_code


def assess(
    *,
    phase: str,
    binding: records.Binding,
    workload: kobj.WorkloadInfo | None,
    pods: Sequence[kobj.PodInfo],
    lost: str | None,
    assumed: bool,
    now: float,
    pods_ready_timeout: float,
    stranded: str | None = None,
    member_lost: str | None = None,
    remake_after: float | None = None,
    retry: tuple[int, tuple[int, ...]] = (1, ()),
    retries: int = 0,
) -> Verdict:
    """The next step for a job in phase Bound or Running (see the module docstring)."""
    failed_itself = application_failure(pods)
    lost_reason = next((p.lost for p in pods if p.lost), None) or lost
    if workload is not None and workload.finished:
        if workload.complete:
            return PROGRESS
        if failed_itself is not None:
            again = retried(pods, retry, retries)
            return Verdict("requeue", again[0], code="Retried", exit_code=again[1]) if again else PROGRESS
        if workload.disrupted or lost_reason is not None:
            return Verdict("requeue", f"a replica was lost: {lost_reason or workload.failed_reason}")
        return PROGRESS  # failed for a reason of its own (deadline, ...): Failed with the Job's reason
    if member_lost is not None:
        return Verdict("requeue", member_lost, code="MemberLost")
    if failed_itself is not None:
        return PROGRESS  # the Job controller fails the Job next; nothing to do before it does
    if lost_reason is not None:
        return Verdict("requeue", f"a replica was lost: {lost_reason}")
    if workload is None:
        if assumed:
            return PROGRESS  # bound a moment ago: the binder is creating the Job
        if phase == "Running":
            return Verdict("requeue", "its batch Job was deleted while it ran")
        if pods:
            return Verdict("requeue", "its batch Job was deleted before all replicas started")
        return Verdict("ensure")
    ready = ready_replicas(pods)
    if phase == "Bound" and ready < binding.replicas:
        if stranded is not None:
            return Verdict("requeue", f"{binding.replicas - ready} replica(s) cannot start where they were placed: {stranded}")
        deadline = (binding.bound_epoch if binding.bound_epoch is not None else now) + pods_ready_timeout
        if now >= deadline:
            return Verdict(
                "requeue",
                f"{ready} of {binding.replicas} replica(s) running {pods_ready_timeout:g}s after it was bound "
                f"(operator.pods_ready_timeout_seconds)",
            )
        started = workload.start_time
        if remake_after is not None and started is not None and not pods and not (
                workload.active or workload.succeeded or workload.failed):
            if now >= started + remake_after:
                return Verdict("remake", f"its batch Job {workload.key[1]} was started by the Job controller "
                                         f"{now - started:.0f}s ago and has made no pod")
            deadline = min(deadline, started + remake_after)
        return Verdict("wait", at=deadline)
    return PROGRESS
