"""What the hub knows of each member cluster's connection, as the member connections
(`suanli/members`) report it: a problem that keeps its pools from new jobs, lost (its jobs were
requeued), or synced (its nodes, pods and Jobs are in the cache). Part of the cache; no I/O.
"""

from __future__ import annotations


class MemberState:
    def __init__(self) -> None:
        # Member clusters (by center name) that cannot be used now: (Ready condition reason, message).
        self.problems: dict[str, tuple[str, str]] = {}
        self.lost: set[str] = set()  # unreachable for members.lost_after_seconds: their jobs were requeued
        # Members whose nodes, pods and Jobs the cache holds (each watch's first LIST is in): until then
        # their jobs' Jobs and pods are not judged missing (after a restart, before the first LIST).
        self.synced: set[str] = set()

    def set(self, center: str, problem: tuple[str, str] | None, lost: bool = False) -> bool:
        """What the member connection of `center` knows now (None: connected); True if it changed."""
        before = (self.problems.get(center), center in self.lost)
        if problem is None:
            self.problems.pop(center, None)
        else:
            self.problems[center] = problem
        if lost:
            self.lost.add(center)
        else:
            self.lost.discard(center)
        return before != (problem, lost)

    def known(self, cluster: str) -> bool:
        """Whether the cache can judge the member's Jobs and pods: its first LIST is in, or it is lost."""
        return cluster in self.synced or cluster in self.lost

    def awaited(self, center: str) -> bool:
        """Neither listed yet nor known to have a problem: a restarted hub waits for it before planning."""
        return center not in self.synced and center not in self.problems

    def forget(self, cluster: str) -> None:
        self.set(cluster, None)
        self.synced.discard(cluster)
