"""`make cluster-up CLUSTER=NAME`: further local control planes, independent of each other.

Two named clusters are brought up next to the cluster under test, ``itest-a`` with
``make cluster-up CLUSTER=itest-a`` and ``itest-b`` with ``SUANLI_CLUSTER=itest-b up.sh`` and the scale
settings ``B_SETTINGS`` (node Lease length, controller-manager API rate: kept, and refused when changed): each
has its kubeconfig at ``.cluster/NAME/kubeconfig``, answers there, has ports of its own (none of
the default cluster's, none of the other's), and does not see the other's nodes. The
``member_cluster`` fixture stops and starts one's control plane and finds its objects and ports
unchanged; ``make cluster-down CLUSTER=itest-a`` removes that one only. The named clusters this
module started are removed at its end. The script checks that need no running cluster (names
refused, the default cluster's down.sh keeping the named clusters' folders) come first.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.cluster import fake_nodes as fake_nodes_lib
from tests.cluster.pytest_plugin import (
    CLUSTER_SCRIPTS,
    LOCAL_CLUSTERS_ROOT,
    LOCAL_STATE_DIR,
    REPO_ROOT,
    cluster_script_env,
    local_cluster_dir,
    node_ready,
    wait_for_value,
)

A, B = "itest-a", "itest-b"
B_SETTINGS = {"SUANLI_NODE_LEASE_SECONDS": "60", "SUANLI_CONTROLLER_MANAGER_QPS": "50"}
DEFAULT_PORTS = {16443, 12379, 12380, 16257, 16259, 16080}  # tests/cluster/lib.sh
UP_TIMEOUT_S = 300  # one named cluster's start on 2 busy cores takes ~10-40 s
SCRIPT_TIMEOUT_S = 120
API_TIMEOUT_S = 60
# The variables by which an outer `make` (make integration) would hand its own settings to ours.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def _run(args: list[str], env: dict[str, str], timeout: float = SCRIPT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc


def _script(script: str, *args: str, name: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run tests/cluster/SCRIPT for the named cluster (or, name None, with no cluster name at all)."""
    return _run(["bash", str(CLUSTER_SCRIPTS / script), *args], {**cluster_script_env(name), **env})


def _make(target: str, name: str) -> subprocess.CompletedProcess[str]:
    """`make TARGET CLUSTER=NAME`, as a developer types it (nothing of the session's cluster in the environment)."""
    env = {k: v for k, v in cluster_script_env(name).items() if k != "SUANLI_CLUSTER" and k not in MAKE_ENV}
    return _run(["make", "--no-print-directory", target, f"CLUSTER={name}"], env, timeout=UP_TIMEOUT_S)


def _ports(name: str) -> dict[str, int]:
    pairs = (line.split("=", 1) for line in (local_cluster_dir(name) / "ports.env").read_text().splitlines())
    return {key: int(value) for key, value in pairs}


def _kubectl(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    state = local_cluster_dir(name)
    return _run([str(state / "bin" / "kubectl"), "--kubeconfig", str(state / "kubeconfig"),
                 "--request-timeout=10s", *args], dict(os.environ), timeout=30)


def _core_v1(name: str) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(config.new_client_from_config(config_file=str(local_cluster_dir(name) / "kubeconfig")))


# --- the scripts, without a running cluster --------------------------------------------------


@pytest.mark.parametrize("env", [{"CLUSTER": "Guian"}, {"CLUSTER": "gui_an"}, {"CLUSTER": "-guian"},
                                 {"CLUSTER": "x" * 64}, {"CLUSTER": "logs"}, {"SUANLI_CLUSTER": "demo"},
                                 {"CLUSTER": "guian", "SUANLI_CLUSTER": "zhongwei"}])
def test_unusable_cluster_names_are_refused_with_the_reason(tmp_path: Path, env: dict[str, str]) -> None:
    for script in ("up.sh", "down.sh", "restart.sh"):
        proc = _script(script, "--start", SUANLI_CLUSTER_DIR=str(tmp_path), **env)
        assert proc.returncode != 0
        assert "is not a usable cluster name" in proc.stderr or "name different clusters" in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir()), "a refused name must leave nothing behind"


def _fake_state(directory: Path) -> None:
    """What up.sh leaves in a state dir (no processes: the pid files name none)."""
    for sub in ("pki", "logs", "pids", "bin", "etcd"):
        (directory / sub).mkdir(parents=True)
    for file in (".suanli-cluster", "kubeconfig", "cluster.env"):
        (directory / file).write_text("")


def test_the_default_clusters_down_keeps_the_named_clusters_state(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    _fake_state(root)
    (root / "demo").mkdir()
    _fake_state(root / "guian")
    (root / "guian" / "ports.env").write_text("APISERVER_PORT=23456\n")

    proc = _ok(_script("down.sh", SUANLI_CLUSTER_DIR=str(root)))
    assert sorted(p.name for p in root.iterdir()) == ["guian"], proc.stderr
    assert (root / "guian" / "kubeconfig").exists() and (root / "guian" / "ports.env").exists()
    assert "except the named clusters' (guian" in proc.stderr
    # Only the named cluster left: nothing of the default's to stop (no "not made by up.sh").
    assert "nothing to stop" in _ok(_script("down.sh", SUANLI_CLUSTER_DIR=str(root))).stderr
    _ok(_script("down.sh", name="guian", SUANLI_CLUSTER_DIR=str(root)))
    assert not (root / "guian").exists()


def test_the_default_clusters_ownership_check_ignores_the_named_clusters(tmp_path: Path) -> None:
    root = tmp_path / "cluster"
    _fake_state(root / "guian")
    with socket.socket() as busy:  # a port in use, so up.sh stops at its port check, before starting anything
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        proc = _script("up.sh", SUANLI_CLUSTER_DIR=str(root), SUANLI_ETCD_CLIENT_PORT=port)
        assert proc.returncode != 0
        assert "not made by up.sh" not in proc.stderr and f"port {port} (for etcd) is already in use" in proc.stderr, (
            proc.stderr)
        (root / "stray-file").write_text("")  # something of nobody's in the default's own state dir
        proc = _script("up.sh", SUANLI_CLUSTER_DIR=str(root), SUANLI_ETCD_CLIENT_PORT=port)
        assert proc.returncode != 0 and "exists but was not made by up.sh" in proc.stderr, proc.stderr
    assert sorted(p.name for p in root.iterdir()) == ["guian", "stray-file"]


@pytest.mark.parametrize("env", [{"SUANLI_NODE_LEASE_SECONDS": "5"}, {"SUANLI_NODE_LEASE_SECONDS": "40s"},
                                 {"SUANLI_CONTROLLER_MANAGER_QPS": "0"}, {"SUANLI_CONTROLLER_MANAGER_QPS": "fast"}])
def test_unusable_scale_settings_are_refused_with_the_variable(tmp_path: Path, env: dict[str, str]) -> None:
    proc = _script("up.sh", name="guian", SUANLI_CLUSTER_DIR=str(tmp_path), **env)
    (variable, value), = env.items()
    assert proc.returncode != 0 and f"{variable} must be" in proc.stderr and f"got '{value}'" in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir()), "a refused setting must leave nothing behind"


# --- two named clusters, for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def named_clusters() -> Iterator[dict[str, Path]]:
    """itest-a (via make) and itest-b (via up.sh) running; removed at the end of the module."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("named clusters are local control planes (tests/cluster); this session runs against KUBECONFIG")
    for name in (A, B):  # left over from an interrupted run: start from scratch
        if local_cluster_dir(name).exists():
            _ok(_script("down.sh", name=name))
    made: list[str] = []
    try:
        made.append(A)
        _ok(_make("cluster-up", A))
        made.append(B)
        _ok(_run(["bash", str(CLUSTER_SCRIPTS / "up.sh")], {**cluster_script_env(B), **B_SETTINGS},
                 timeout=UP_TIMEOUT_S))
        yield {name: local_cluster_dir(name) for name in (A, B)}
    finally:
        for name in made:
            if local_cluster_dir(name).exists():
                _ok(_script("down.sh", name=name))


def cluster_test(test: Callable[..., None]) -> Callable[..., None]:
    """Needs the control plane binaries and starts clusters: marked `cluster`; whichever such test runs first
    brings both named clusters up (within its timeout)."""
    return pytest.mark.cluster(pytest.mark.timeout(900)(test))


@cluster_test
def test_a_named_cluster_answers_at_its_kubeconfig(named_clusters: dict[str, Path]) -> None:
    for name in (A, B):
        kubeconfig = LOCAL_CLUSTERS_ROOT / name / "kubeconfig"
        if "SUANLI_CLUSTER_DIR" not in os.environ:
            assert kubeconfig == REPO_ROOT / ".cluster" / name / "kubeconfig"
        assert kubeconfig.is_file() and named_clusters[name] / "kubeconfig" == kubeconfig
        doc = yaml.safe_load(kubeconfig.read_text())
        assert doc["current-context"] == f"suanli-{name}"
        proc = _ok(_kubectl(name, "get", "ns", "-o", "name"))
        assert "namespace/default" in proc.stdout.split(), proc.stdout


@cluster_test
def test_named_clusters_have_ports_of_their_own(named_clusters: dict[str, Path]) -> None:
    ports = {name: _ports(name) for name in (A, B)}
    hub_env = LOCAL_STATE_DIR / "cluster.env"
    hub_ports = set(DEFAULT_PORTS)
    if hub_env.exists():  # the local cluster under test, maybe on SUANLI_*_PORT ports
        hub_ports |= {int(port) for port in re.findall(r":(\d+)", hub_env.read_text())}
    for name, mine in ports.items():
        assert len(mine) == 6 and len(set(mine.values())) == 6, mine
        assert not set(mine.values()) & hub_ports, f"{name} shares ports with the default cluster: {mine}"
        server = yaml.safe_load((named_clusters[name] / "kubeconfig").read_text())["clusters"][0]["cluster"]["server"]
        assert server == f"https://127.0.0.1:{mine['APISERVER_PORT']}"
        listening = _run(["ss", "-ltnH"], dict(os.environ), timeout=10).stdout
        for var, port in mine.items():
            assert f"127.0.0.1:{port} " in listening, f"{name}: nothing listens on its {var} {port}"
    assert not set(ports[A].values()) & set(ports[B].values()), ports


@cluster_test
def test_a_node_made_in_one_named_cluster_is_not_in_another(named_clusters: dict[str, Path]) -> None:
    core_a, core_b = _core_v1(A), _core_v1(B)
    center = {"metadata": {"name": f"itest-{uuid.uuid4().hex[:5]}"}, "spec": {"pools": [
        {"name": "npu", "resourceName": "huawei.com/Ascend910", "expected": {"acceleratorsPerNode": 8}}]}}
    names = fake_nodes_lib.apply_nodes(core_a, fake_nodes_lib.nodes_for_centers([center], nodes_per_pool=1))
    try:
        # kwok of itest-a plays its kubelet: the node goes Ready there.
        wait_for_value(lambda: node_ready(core_a.read_node(names[0])), API_TIMEOUT_S,
                       lambda: core_a.read_node(names[0]).status.conditions, what=f"node {names[0]} Ready in {A}")
        assert names[0] not in {n.metadata.name for n in core_b.list_node().items}
        assert names[0] not in _ok(_kubectl(B, "get", "nodes", "-o", "name")).stdout
    finally:
        fake_nodes_lib.delete_nodes(core_a, names)


def _command_line(name: str, component: str) -> str:
    pid = (local_cluster_dir(name) / "pids" / f"{component}.pid").read_text().strip()
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@cluster_test
def test_scale_settings_reach_kwok_and_the_controller_manager_and_are_kept(named_clusters: dict[str, Path]) -> None:
    for name, lease, qps in ((A, 40, 20), (B, 60, 50)):  # A: the defaults
        env = (named_clusters[name] / "cluster.env").read_text().splitlines()
        assert f"NODE_LEASE_SECONDS={lease}" in env and f"CONTROLLER_MANAGER_QPS={qps}" in env, env
        assert f"--node-lease-duration-seconds {lease} " in _command_line(name, "kwok")
        manager = _command_line(name, "kube-controller-manager")
        grace = lease * 5 // 4
        assert f"--node-monitor-grace-period {grace}s " in manager and f"--kube-api-qps {qps} " in manager, manager
        assert f"--kube-api-burst {qps * 3 // 2} " in manager, manager
    # kwok of itest-b holds a node's Lease for the length it was given.
    core = _core_v1(B)
    center = {"metadata": {"name": f"itest-{uuid.uuid4().hex[:5]}"}, "spec": {"pools": [
        {"name": "gpu", "resourceName": "nvidia.com/gpu", "expected": {"acceleratorsPerNode": 8}}]}}
    names = fake_nodes_lib.apply_nodes(core, fake_nodes_lib.nodes_for_centers([center], nodes_per_pool=1))
    try:
        from kubernetes import client

        leases = client.CoordinationV1Api(core.api_client)

        def lease_seconds() -> int | None:
            with contextlib.suppress(Exception):
                return leases.read_namespaced_lease(names[0], "kube-node-lease").spec.lease_duration_seconds
            return None

        assert wait_for_value(lease_seconds, API_TIMEOUT_S, lease_seconds, what=f"the Lease of {names[0]}") == 60
    finally:
        fake_nodes_lib.delete_nodes(core, names)
    # Started again without the variables, it keeps them; asked for others while it runs, it refuses.
    again = _ok(_script("up.sh", name=B))
    assert "reusing the running cluster" in again.stderr, again.stderr
    refused = _script("up.sh", name=B, SUANLI_NODE_LEASE_SECONDS="40")
    assert refused.returncode != 0, refused.stderr
    assert "has NODE_LEASE_SECONDS=60, not the 40 asked for with SUANLI_NODE_LEASE_SECONDS" in refused.stderr
    assert "make cluster-down CLUSTER=itest-b" in refused.stderr, refused.stderr


@cluster_test
def test_a_member_clusters_control_plane_stops_and_comes_back_unchanged(
    named_clusters: dict[str, Path], member_cluster: Any
) -> None:
    from kubernetes.client.exceptions import ApiException

    member = member_cluster(A, stoppable=True)
    assert member.kubeconfig == str(named_clusters[A] / "kubeconfig")
    ports, kubeconfig = member.ports(), Path(member.kubeconfig).read_text()
    core = _core_v1(A)
    name = f"itest-{uuid.uuid4().hex[:5]}"
    core.create_namespaced_config_map("default", {"metadata": {"name": name}, "data": {"kept": "yes"}})

    member.stop()
    assert _kubectl(A, "get", "ns").returncode != 0, "the API server still answers after stop()"
    took = member.start()
    assert member.ports() == ports and Path(member.kubeconfig).read_text() == kubeconfig
    assert core.read_namespaced_config_map(name, "default").data == {"kept": "yes"}, f"after {took:.1f}s"
    with contextlib.suppress(ApiException):
        core.delete_namespaced_config_map(name, "default")
    assert member_cluster(A) is member  # the same one, reused


@cluster_test
def test_cluster_down_with_a_name_removes_only_that_cluster(named_clusters: dict[str, Path]) -> None:
    hub_kubeconfig = LOCAL_STATE_DIR / "kubeconfig"
    hub_had_one = hub_kubeconfig.exists()
    _ok(_make("cluster-down", A))
    assert not named_clusters[A].exists()
    assert "namespace/default" in _ok(_kubectl(B, "get", "ns", "-o", "name")).stdout.split()
    assert (named_clusters[B] / "ports.env").exists()
    assert hub_kubeconfig.exists() == hub_had_one
