"""The API servers the operator writes to: its own cluster's, and each connected member cluster's.

A member cluster is named by its ComputeCenter (`spec.cluster`); "" is the operator's own cluster.
The member connections (suanli/members/connections.py) put a member's `Api` here once it is
connected and take it away when it is not; whoever writes a batch Job, deletes one or lifts a pod's
gate asks for the Api of the cluster the object is in and gets `Unavailable`, with the reason, while
that member cannot be reached.
"""

from __future__ import annotations

from suanli.kube import client as client_mod


class Unavailable(Exception):
    """The member cluster cannot be written to now (its message says why, for a person)."""


class Clusters:
    def __init__(self, hub: client_mod.Api):
        self.hub = hub
        self._members: dict[str, client_mod.Api] = {}
        self._problems: dict[str, str] = {}

    def api(self, cluster: str) -> client_mod.Api:
        """The Api of `cluster` ("": the operator's own), or `Unavailable`."""
        if not cluster:
            return self.hub
        api = self._members.get(cluster)
        if api is None:
            why = self._problems.get(cluster, "it is not connected yet")
            raise Unavailable(f"member cluster {cluster} cannot be reached: {why}")
        return api

    def connected(self, cluster: str, api: client_mod.Api) -> None:
        self._members[cluster] = api
        self._problems.pop(cluster, None)

    def disconnected(self, cluster: str, problem: str) -> None:
        self._members.pop(cluster, None)
        self._problems[cluster] = problem

    def forget(self, cluster: str) -> None:
        """The center is gone, or is no longer a member."""
        self._members.pop(cluster, None)
        self._problems.pop(cluster, None)

    def members(self) -> dict[str, client_mod.Api]:
        return dict(self._members)
