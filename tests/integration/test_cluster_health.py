"""The control plane under test is healthy: API server ready, scheduler and controller-manager leading."""

from __future__ import annotations

import datetime as dt
import ssl
import urllib.request
from typing import Any

import pytest

pytestmark = pytest.mark.cluster

# Leader election renews every ~2s; a lease untouched for this long means the component is down.
LEASE_FRESH_S = 60
HEALTH_TIMEOUT_S = 30


def _get(kube: Any, path: str) -> tuple[int, str]:
    """GET a non-resource path (``/readyz``) with the kubeconfig's credentials, on any client version."""
    api = kube.api_client
    query = [("verbose", "true")]
    auth = ["BearerToken"]  # token-based kubeconfigs; client certificates work regardless
    if hasattr(api, "param_serialize"):  # kubernetes client >= 35 (openapi-generator 7)
        method, url, headers, body, post_params = api.param_serialize(
            method="GET", resource_path=path, query_params=query, auth_settings=auth
        )
        response = api.call_api(method, url, headers, body, post_params, _request_timeout=10)
        response.read()
        return response.status, response.data.decode()
    data, status, _headers = api.call_api(  # older clients
        path, "GET", query_params=query, auth_settings=auth, _preload_content=False, _request_timeout=10
    )
    return status, data.data.decode()


@pytest.mark.parametrize("path", ["/readyz", "/livez"])
def test_apiserver_reports_ready_and_live(kube: Any, path: str) -> None:
    status, body = _get(kube, path)
    assert status == 200, body
    assert "check passed" in body, body


@pytest.mark.parametrize("component", ["kube-scheduler", "kube-controller-manager"])
def test_scheduler_and_controller_manager_hold_fresh_leader_leases(
    kube: Any, wait_for: Any, component: str
) -> None:
    from kubernetes import client

    coordination = client.CoordinationV1Api(kube.api_client)

    def fresh_lease() -> Any:
        lease = coordination.read_namespaced_lease(component, "kube-system")
        renewed = lease.spec.renew_time
        age = (dt.datetime.now(dt.UTC) - renewed).total_seconds() if renewed else None
        return lease if age is not None and age < LEASE_FRESH_S else None

    lease = wait_for(
        fresh_lease,
        HEALTH_TIMEOUT_S,
        lambda: coordination.read_namespaced_lease(component, "kube-system").spec,
        what=f"a leader lease kube-system/{component} renewed within {LEASE_FRESH_S}s",
    )
    assert lease.spec.holder_identity


@pytest.mark.parametrize("key", ["CONTROLLER_MANAGER_HEALTHZ", "SCHEDULER_HEALTHZ", "KWOK_HEALTHZ"])
def test_local_components_answer_healthz(kube: Any, key: str) -> None:
    env = kube.local_cluster_env()
    if not env:
        pytest.skip("component health ports are only known for the local control plane (tests/cluster/up.sh)")
    url = env[key]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the components serve self-signed certificates on 127.0.0.1
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        assert response.status == 200, response.read().decode()
