"""Requests to an API server over the synchronous `kubernetes` client, and the reads the operator makes.

Requests go through the client's configuration, authentication, TLS and connection pool
(`ApiClient.param_serialize` / `call_api`) but skip its typed layer: bodies are plain
dictionaries in and out. The generated methods validate every argument with pydantic and turn
every answer into model objects the operator would only turn back into dictionaries; at
thousands of writes a minute that was a large part of the operator's CPU (`make bench`).
The writes, on their thread pools, are `kube/client.py`'s `Api`, which extends this.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from kubernetes import client as _k8s
from kubernetes import config as _k8s_config
from kubernetes.client.exceptions import ApiException

GROUP, VERSION = "suanli.io", "v1alpha1"
JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
PAGE = 500  # objects per LIST page: bounded memory at startup, however large the cluster
# What the cache mirrors: (collection path, label selector).
COLLECTIONS = {
    "centers": (f"/apis/{GROUP}/{VERSION}/computecenters", None),
    "jobs": (f"/apis/{GROUP}/{VERSION}/computejobs", None),
    "nodes": ("/api/v1/nodes", None),
    "pods": ("/api/v1/pods", None),
    "workloads": ("/apis/batch/v1/jobs", "suanli.io/job"),
    "queues": (f"/apis/{GROUP}/{VERSION}/computequeues", None),
    "namespaces": ("/api/v1/namespaces", None),
    "slices": ("/apis/resource.k8s.io/v1/resourceslices", None),
    "deviceclasses": ("/apis/resource.k8s.io/v1/deviceclasses", None),
    "claims": ("/apis/resource.k8s.io/v1/resourceclaims", None),
}
# Kinds a cluster may not serve (Dynamic Resource Allocation's, before Kubernetes 1.34 or switched off):
# their LIST answering 404 is `NotServed`, and the cluster has none of them.
OPTIONAL = frozenset({"slices", "deviceclasses", "claims"})


class NotServed(Exception):
    """The API server does not serve this kind (its LIST answered 404)."""
# The generated client is loosely typed; we pass and read plain dictionaries.
k8s: Any = _k8s
k8s_config: Any = _k8s_config


def api_client(kubeconfig: str | None, pool_size: int = 32) -> Any:
    """A client from a kubeconfig file, else in-cluster, else the default kubeconfig."""
    configuration = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except k8s_config.ConfigException:
            k8s_config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return k8s.ApiClient(configuration)


class Transport:
    """Plain requests to one API server, LISTs in pages, WATCH streams and GETs."""

    def __init__(self, api: Any, timeout: float | None = None):
        """`timeout`: of a request that names none, seconds (a member cluster's: one that stopped
        answering must not hold a thread for ever)."""
        self.timeout = timeout
        self.client: Any = api

    # --- plain requests ---------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: list[tuple[str, Any]] | None = None,
        content_type: str = JSON,
        accept: str = JSON,
        timeout: float | None = None,
        decode: bool = True,
    ) -> Any:
        """One API call; the decoded JSON answer (None with `decode=False`: writes whose answer
        nobody reads skip decoding it). Raises `ApiException` (status, body) on an error."""
        response = self._send(method, path, body, query, content_type, accept, timeout if timeout is not None else self.timeout)
        response.read()
        return json.loads(response.data) if decode and response.data else None

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: list[tuple[str, Any]] | None,
        content_type: str,
        accept: str,
        timeout: Any,
    ) -> Any:
        """Send one call through the client's auth, TLS and pool; the response, body not read yet.
        Raises `ApiException` (status, body) on an error status."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        verb, url, headers, _, _ = self.client.param_serialize(
            method=method, resource_path=path, query_params=query, header_params=headers, auth_settings=["BearerToken"]
        )
        response = self.client.call_api(verb, url, headers, body, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response

    @staticmethod
    def _collection(kind: str, *query: tuple[str, Any]) -> tuple[str, list[tuple[str, Any]]]:
        """The path of a mirrored kind and `query` with the kind's label selector, if it has one."""
        path, selector = COLLECTIONS[kind]
        return path, [*query, *([("labelSelector", selector)] if selector else [])]

    def page(self, kind: str, token: str = "", accept: str = JSON) -> tuple[list[dict[str, Any]], str, str]:
        """One page (at most `PAGE` objects) of a mirrored kind, the token of the next ("" at the end)
        and the LIST's resourceVersion (every page of one LIST is the same snapshot)."""
        path, query = self._collection(kind, ("limit", PAGE), *([("continue", token)] if token else []))
        try:
            page = self.request("GET", path, query=query, accept=accept, timeout=60)
        except ApiException as exc:
            if exc.status == 404 and kind in OPTIONAL:
                raise NotServed(f"the API server does not serve {path}") from None
            raise
        meta = page.get("metadata") or {}
        return list(page.get("items") or []), str(meta.get("continue") or ""), str(meta.get("resourceVersion") or "")

    def pages(self, kind: str, accept: str = JSON) -> list[dict[str, Any]]:
        """Every object of one mirrored kind, LISTed in pages of `PAGE`."""
        items, token, _ = self.page(kind, accept=accept)
        while token:
            more, token, _ = self.page(kind, token, accept)
            items.extend(more)
        return items

    def watch(self, kind: str, resource_version: str, timeout_seconds: int) -> Iterator[list[dict[str, Any]]]:
        """One WATCH of a mirrored kind from `resource_version` (bookmarks on), as the server sends it:
        each chunk's decoded events, until the server ends the stream (after `timeout_seconds`).
        Raises `ApiException` if the request itself fails."""
        path, query = self._collection(
            kind,
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        )
        response = self._send("GET", path, None, query, JSON, JSON, (10, timeout_seconds + 30))
        stream, finished = response.response, False
        try:
            rest = b""
            for chunk in stream.stream(65536):
                *lines, rest = (rest + chunk).split(b"\n")
                events = [json.loads(line) for line in lines if line.strip()]
                if events:
                    yield events
            finished = True
        finally:
            if finished:
                stream.release_conn()
            else:
                stream.close()  # left mid-stream: the connection cannot serve another request

    # --- reads ---------------------------------------------------------------------------

    def list_keys(self, kinds: tuple[str, ...] = tuple(COLLECTIONS)) -> dict[str, set[tuple[str, str, str]]]:
        """(namespace or "", name, uid) of every object of `kinds` (default: all the cache mirrors), by
        kind: metadata-only LISTs (the relist safety net needs names and uids, not pods' specs)."""
        out: dict[str, set[tuple[str, str, str]]] = {}
        for kind in kinds:
            keys = set()
            try:
                items = self.pages(kind, accept=METADATA_ONLY)
            except NotServed:
                items = []  # a kind the cluster does not serve: it has none
            for item in items:
                meta = item.get("metadata") or {}
                keys.add((meta.get("namespace") or "", meta.get("name") or "", meta.get("uid") or ""))
            out[kind] = keys
        return out

    def exists(self, kind: str, key: tuple[str, str]) -> dict[str, Any] | None:
        """GET one mirrored object: the object (its uid tells whether it is the one cached or a
        successor of the same name), None only on 404 (any other error is raised)."""
        path = COLLECTIONS[kind][0]
        namespace, name = key
        if namespace:
            head, plural = path.rsplit("/", 1)
            path = f"{head}/namespaces/{quote(namespace)}/{plural}"
        try:
            found: dict[str, Any] = self.request("GET", f"{path}/{quote(name)}", timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def read_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """GET one pod; None if it is gone (any other error is raised)."""
        try:
            pod: dict[str, Any] = self.request("GET", f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}", timeout=30)
            return pod
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def read_secret_key(self, namespace: str, name: str, key: str) -> bytes | None:
        """One key of a Secret, decoded; None if the Secret has no such key. Raises `ApiException`
        (404: no such Secret)."""
        secret: dict[str, Any] = self.request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}", timeout=10
        )
        value = (secret.get("data") or {}).get(key)
        if value is None:
            text = (secret.get("stringData") or {}).get(key)
            return text.encode() if text is not None else None
        return base64.b64decode(value)
