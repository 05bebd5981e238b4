"""The pods the operator mirrors, by job and by node: what a job's replicas are doing, and the
accelerators requested on each node by pods not yet terminated (summed as pods come and go, so a
snapshot never walks every pod). Part of the cache (`kube/cache.py`); no I/O.
"""

from __future__ import annotations

from suanli.kube import objects as kobj

Key = kobj.Key


class PodIndex:
    def __init__(self) -> None:
        self.pods: dict[Key, kobj.PodInfo] = {}
        self.by_job: dict[Key, set[Key]] = {}  # (namespace, job label) -> pods
        self.node_used: dict[tuple[str, str], int] = {}  # (node, resource) -> requested by non-terminated pods
        # (namespace, job label) -> (ComputeJob uid, attempt, why) of the last pod deleted before it finished
        self.lost: dict[Key, tuple[str | None, int, str]] = {}

    def _count(self, info: kobj.PodInfo, sign: int) -> None:
        if info.terminated or info.node is None:
            return
        for resource, amount in info.requests.items():
            slot = (info.node, resource)
            left = self.node_used.get(slot, 0) + sign * amount
            if left:
                self.node_used[slot] = left
            else:
                self.node_used.pop(slot, None)

    def put(self, info: kobj.PodInfo) -> None:
        old = self.pods.get(info.key)
        if old is not None:
            self._count(old, -1)
        self._count(info, +1)
        self.pods[info.key] = info
        if info.job_key is not None:
            self.by_job.setdefault(info.job_key, set()).add(info.key)

    def delete(self, key: Key) -> kobj.PodInfo | None:
        """`key`: as the cache knows the pod (`PodInfo.key`: a member's namespace qualified). A pod
        of a job deleted before it terminated is remembered as the job's lost replica."""
        info = self.pods.pop(key, None)
        if info is None:
            return None
        self._count(info, -1)
        if info.job_key is None:
            return info
        if not info.terminated:
            reason = info.lost or f"pod {key[1]} was deleted while {info.phase}"
            self.lost[info.job_key] = (info.job_uid, info.attempt or 0, reason)
        members = self.by_job.get(info.job_key)
        if members is not None:
            members.discard(key)
            if not members:
                del self.by_job[info.job_key]
        return info

    def of_job(self, label_key: Key) -> list[kobj.PodInfo]:
        """The pods carrying a (namespace, suanli.io/job label), in name order."""
        return [self.pods[k] for k in sorted(self.by_job.get(label_key, ())) if k in self.pods]

    def in_cluster(self, cluster: str) -> list[Key]:
        return [k for k, info in self.pods.items() if info.cluster == cluster]
