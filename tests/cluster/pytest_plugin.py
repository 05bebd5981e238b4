"""Pytest fixtures for tests against a real Kubernetes API server.

Which cluster:
  * ``KUBECONFIG`` set: that cluster (kind, a dev cluster, ...). Nothing is started or
    stopped; CRDs from ``crds/`` are applied to it.
  * otherwise the local control plane of ``tests/cluster/up.sh``: reused when running,
    started (and built, the first time) when not. It keeps running after the session
    (the next run reuses it in about a second) unless ``SUANLI_CLUSTER_STOP=1``, in
    which case a cluster this session started is stopped at the end.

Only tests marked ``@pytest.mark.cluster`` trigger any of this: the cluster is brought up
once, after collection, when at least one selected test carries the mark (outside any
per-test timeout, because a first-time build takes a while). Unit tests never start it.

Use from a conftest::

    from tests.cluster.pytest_plugin import *  # noqa: F403  (fixtures and hooks)

Fixtures: ``kube`` (session: API clients, kubeconfig, installed CRDs), ``core_v1``,
``batch_v1``, ``custom_objects``, ``namespace`` (a fresh namespace per test, deleted
after it), ``fake_nodes`` (make kwok nodes for ComputeCenter pools, removed after the
test), ``wait_for`` (the deadline-bound polling helper below), ``member_cluster`` (session:
further clusters by name, for multi-cluster tests; see ``MemberCluster``).

``CLUSTER=NAME`` (or ``SUANLI_CLUSTER``) in the environment makes the local cluster under
test the named one of ``make cluster-up CLUSTER=NAME`` (state in ``.cluster/NAME/``), as
it does for the scripts.

Member clusters: ``member_cluster("guian")`` is a local control plane of its own, brought up
(or reused) with ``CLUSTER=guian tests/cluster/up.sh``, kubeconfig ``.cluster/guian/kubeconfig``.
With ``SUANLI_MEMBER_KUBECONFIGS="guian=/path/a,zhongwei=/path/b"`` those kubeconfigs are used
instead and nothing is started; stopping a member's control plane (failover tests) is then not
possible, and ``member_cluster(name, stoppable=True)`` skips the test saying so.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from tests.cluster import fake_nodes as fake_nodes_module

REPO_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPTS = REPO_ROOT / "tests" / "cluster"
# The default local cluster's state dir; named clusters (CLUSTER=NAME) have theirs inside it.
LOCAL_CLUSTERS_ROOT = Path(os.environ.get("SUANLI_CLUSTER_DIR", REPO_ROOT / ".cluster"))
# The local cluster under test: the default one, or the one CLUSTER=NAME names (as in tests/cluster/lib.sh).
HUB_CLUSTER_NAME = os.environ.get("SUANLI_CLUSTER") or os.environ.get("CLUSTER") or ""
LOCAL_STATE_DIR = LOCAL_CLUSTERS_ROOT / HUB_CLUSTER_NAME if HUB_CLUSTER_NAME else LOCAL_CLUSTERS_ROOT
MEMBER_KUBECONFIGS_ENV = "SUANLI_MEMBER_KUBECONFIGS"
CRDS_DIR = REPO_ROOT / "crds"
TEST_NAMESPACE_LABEL = "suanli.io/test"

# Deadlines, in seconds (overridable for slow machines).
CRD_ESTABLISHED_TIMEOUT_S = float(os.environ.get("SUANLI_TEST_CRD_TIMEOUT_SECONDS", "60"))
NAMESPACE_TIMEOUT_S = float(os.environ.get("SUANLI_TEST_NAMESPACE_TIMEOUT_SECONDS", "90"))
NODE_READY_TIMEOUT_S = float(os.environ.get("SUANLI_TEST_NODE_TIMEOUT_SECONDS", "60"))
UP_TIMEOUT_S = float(os.environ.get("SUANLI_CLUSTER_UP_TIMEOUT_SECONDS", "5400"))
# A member cluster is brought up inside a test (the binaries are built by then): a start takes ~10-30 s.
MEMBER_UP_TIMEOUT_S = float(os.environ.get("SUANLI_MEMBER_UP_TIMEOUT_SECONDS", "240"))

T = TypeVar("T")

__all__ = [
    "WaitTimeout",
    "_deleted_namespaces",
    "batch_v1",
    "core_v1",
    "custom_objects",
    "fake_nodes",
    "kube",
    "member_cluster",
    "namespace",
    "pytest_collection_finish",
    "pytest_configure",
    "pytest_sessionfinish",
    "wait_for",
    "wait_for_value",
]


# --- waiting with a deadline ---------------------------------------------------------


class WaitTimeout(AssertionError):
    """A condition did not hold before its deadline; the message shows the last observed state."""


def wait_for_value(
    predicate: Callable[[], T | None],
    timeout: float,
    describe: str | Callable[[], Any],
    *,
    what: str | None = None,
    interval: float = 0.2,
    max_interval: float = 1.0,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or raise ``WaitTimeout``.

    ``describe`` is either the thing waited for (a string) or a callable returning the
    current state, which is put in the error message ("last observed: ...") so a failure
    says what the cluster looked like, not just that it timed out. An exception raised by
    ``predicate`` counts as "not yet" and is reported if the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as exc:  # the API may answer 404/409 while things settle
            last_error = exc
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
        interval = min(interval * 1.5, max_interval)
    label = what or (
        describe if isinstance(describe, str) else getattr(predicate, "__doc__", None) or "condition"
    )
    observed = ""
    if callable(describe):
        try:
            observed = f"; last observed: {describe()}"
        except Exception as exc:
            observed = f"; could not describe the state: {exc!r}"
    if last_error is not None:
        observed += f"; last error: {last_error!r}"
    raise WaitTimeout(f"timed out after {timeout:g}s waiting for {label}{observed}")


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """The ``wait_for_value`` helper as a fixture: ``wait_for(predicate, timeout, describe)``."""
    return wait_for_value


# --- which cluster, and bringing it up ----------------------------------------------


@dataclass
class _ClusterState:
    kubeconfig: str | None = None
    external: bool = False
    started_here: bool = False
    error: str | None = None
    attempted: bool = False  # conftests of several folders may import these hooks
    up_seconds: float | None = None


_STATE = _ClusterState()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs a Kubernetes API server (local control plane or KUBECONFIG)"
    )


def _selected_cluster_tests(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("cluster") for item in session.items)


def demo_left_over() -> bool:
    """`make demo` ran on the local control plane (its work directory is there) and left its
    ComputeCenters, fake nodes and jobs for exploring: tests that bring their own fleet must not
    share the cluster with them (a test's job was bound to a demo center)."""
    return (LOCAL_STATE_DIR / "demo").exists()


def _bring_up_local_cluster() -> None:
    kubeconfig = LOCAL_STATE_DIR / "kubeconfig"
    start = time.monotonic()
    if demo_left_over():
        subprocess.run(["bash", str(CLUSTER_SCRIPTS / "down.sh")], cwd=REPO_ROOT, capture_output=True, text=True,
                       timeout=UP_TIMEOUT_S, check=False)
    _STATE.started_here = not kubeconfig.exists()
    try:
        proc = subprocess.run(
            ["bash", str(CLUSTER_SCRIPTS / "up.sh")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=UP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _STATE.error = f"tests/cluster/up.sh did not finish within {UP_TIMEOUT_S:g}s"
        return
    _STATE.up_seconds = time.monotonic() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        _STATE.error = f"tests/cluster/up.sh failed (exit {proc.returncode}):\n{tail}"
        return
    _STATE.kubeconfig = str(kubeconfig)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Bring the cluster up once, before any test runs, if a selected test needs it."""
    if _STATE.attempted or session.config.option.collectonly or not _selected_cluster_tests(session):
        return
    _STATE.attempted = True
    if os.environ.get("KUBECONFIG"):
        _STATE.kubeconfig = os.environ["KUBECONFIG"]
        _STATE.external = True
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        if demo_left_over():
            reporter.write_line("suanli: the local control plane still holds `make demo`'s fleet and jobs; "
                                "starting a fresh one for the tests (tests/cluster/down.sh, then up.sh)")
        reporter.write_line("suanli: bringing up the local control plane (tests/cluster/up.sh)...")
    _bring_up_local_cluster()
    if reporter is not None and _STATE.up_seconds is not None:
        reporter.write_line(f"suanli: local control plane ready after {_STATE.up_seconds:.1f}s")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _STATE.started_here and os.environ.get("SUANLI_CLUSTER_STOP") == "1":
        _STATE.started_here = False
        subprocess.run(["bash", str(CLUSTER_SCRIPTS / "down.sh")], cwd=REPO_ROOT, check=False, timeout=120)


# --- API clients and CRDs -----------------------------------------------------------


@dataclass
class Kube:
    """The cluster under test: kubeconfig path, an API client, and the CRDs installed from crds/."""

    kubeconfig: str
    api_client: Any
    external: bool
    crds: list[str] = field(default_factory=list)

    @property
    def is_local(self) -> bool:
        """True for the local control plane of tests/cluster (its component ports are known)."""
        return not self.external

    def local_cluster_env(self) -> dict[str, str]:
        """The facts up.sh wrote to .cluster/cluster.env (empty for an external cluster)."""
        path = LOCAL_STATE_DIR / "cluster.env"
        if self.external or not path.exists():
            return {}
        pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        return {key: value for key, value in pairs}

    def restart_component(self, name: str, down_seconds: float = 0) -> float:
        """Stop one component of the local control plane (e.g. "kube-apiserver") and start it again
        after `down_seconds` (tests/cluster/restart.sh); returns once it is healthy, with the seconds
        it took. Only the local control plane: an external cluster's components are not ours to stop."""
        assert self.is_local, "restart_component needs the local control plane; the test should skip on others"
        start = time.monotonic()
        proc = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "restart.sh"), name, f"{down_seconds:g}"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=down_seconds + 180, check=False)
        assert proc.returncode == 0, f"tests/cluster/restart.sh {name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        return time.monotonic() - start


def _crd_established(apiext: Any, name: str) -> bool:
    crd = apiext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))


def install_crds(api_client: Any, crds_dir: Path = CRDS_DIR) -> list[str]:
    """Create or replace every CRD in ``crds_dir/*.yaml`` (top level only) and wait until Established."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apiext = client.ApiextensionsV1Api(api_client)
    names: list[str] = []
    files = sorted([*crds_dir.glob("*.yaml"), *crds_dir.glob("*.yml")]) if crds_dir.is_dir() else []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                apiext.create_custom_resource_definition(doc)
            except ApiException as exc:
                if exc.status != 409:
                    raise AssertionError(f"{file}: the API server refused CRD {name}: {exc.body}") from exc
                current = apiext.read_custom_resource_definition(name)
                doc = {
                    **doc,
                    "metadata": {**doc["metadata"], "resourceVersion": current.metadata.resource_version},
                }
                apiext.replace_custom_resource_definition(name, doc)
            names.append(name)
    for name in names:
        wait_for_value(
            lambda name=name: _crd_established(apiext, name),
            CRD_ESTABLISHED_TIMEOUT_S,
            lambda name=name: apiext.read_custom_resource_definition(name).status.conditions,
            what=f"CRD {name} to be Established",
        )
    return names


@pytest.fixture(scope="session")
def kube() -> Kube:
    """The cluster under test, with the CRDs of crds/ installed (an empty list when there are none)."""
    if _STATE.error:
        pytest.fail(f"the local Kubernetes control plane is not available: {_STATE.error}", pytrace=False)
    if _STATE.kubeconfig is None:  # e.g. the fixture used by a test without the cluster mark
        if os.environ.get("KUBECONFIG"):
            _STATE.kubeconfig, _STATE.external = os.environ["KUBECONFIG"], True
        else:
            _bring_up_local_cluster()
            if _STATE.error:
                pytest.fail(_STATE.error, pytrace=False)
    from kubernetes import config

    assert _STATE.kubeconfig is not None
    api_client = config.new_client_from_config(config_file=_STATE.kubeconfig)
    crds = install_crds(api_client)
    return Kube(kubeconfig=_STATE.kubeconfig, api_client=api_client, external=_STATE.external, crds=crds)


@pytest.fixture(scope="session")
def core_v1(kube: Kube) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube.api_client)


@pytest.fixture(scope="session")
def batch_v1(kube: Kube) -> Any:
    from kubernetes import client

    return client.BatchV1Api(kube.api_client)


@pytest.fixture(scope="session")
def custom_objects(kube: Kube) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(kube.api_client)


# --- member clusters, by name -------------------------------------------------------------

# As tests/cluster/lib.sh: a lowercase DNS label, none of the default cluster's own folders.
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
RESERVED_CLUSTER_NAMES = frozenset({"bin", "etcd", "logs", "pids", "pki", "demo"})
CONTROL_PLANE_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# What the scripts take from the environment for the cluster under test; a member gets its own.
_HUB_ONLY_ENV = ("CLUSTER", "SUANLI_CLUSTER", "SUANLI_CLUSTER_LOCKED", "SUANLI_APISERVER_PORT",
                 "SUANLI_ETCD_CLIENT_PORT", "SUANLI_ETCD_PEER_PORT", "SUANLI_CONTROLLER_MANAGER_PORT",
                 "SUANLI_SCHEDULER_PORT", "SUANLI_KWOK_PORT")


def check_cluster_name(name: str) -> str:
    """``name`` if tests/cluster/up.sh takes it as CLUSTER=NAME; ValueError saying why not."""
    if not CLUSTER_NAME_RE.fullmatch(name) or name in RESERVED_CLUSTER_NAMES:
        raise ValueError(f"{name!r} is not a usable cluster name: a lowercase DNS label (a-z, 0-9, '-'), "
                         f"none of {sorted(RESERVED_CLUSTER_NAMES)}")
    return name


def local_cluster_dir(name: str) -> Path:
    """The state dir of the named local cluster (its kubeconfig: ``<dir>/kubeconfig``)."""
    return LOCAL_CLUSTERS_ROOT / check_cluster_name(name)


def cluster_script_env(name: str | None) -> dict[str, str]:
    """The environment for tests/cluster/*.sh acting on the named cluster (None: the default one), not on
    the one under test: this process's environment without the cluster name and ports of that one."""
    env = {key: value for key, value in os.environ.items() if key not in _HUB_ONLY_ENV}
    if name is not None:
        env["SUANLI_CLUSTER"] = check_cluster_name(name)
    return env


def parse_member_kubeconfigs(text: str) -> dict[str, str]:
    """``"guian=/a,zhongwei=/b"`` (SUANLI_MEMBER_KUBECONFIGS) as ``{"guian": "/a", "zhongwei": "/b"}``."""
    members: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, path = (x.strip() for x in item.partition("="))
        if not sep or not name or not path:
            raise ValueError(f"{MEMBER_KUBECONFIGS_ENV}: {item!r} is not NAME=KUBECONFIG_PATH")
        if name in members:
            raise ValueError(f"{MEMBER_KUBECONFIGS_ENV}: member {name!r} is named twice")
        members[name] = str(Path(path).expanduser())
    return members


def _run_script(script: str, *args: str, name: str, timeout: float,
                settings: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """tests/cluster/SCRIPT on the named cluster; `settings`: SUANLI_* variables for it (lib.sh)."""
    try:
        return subprocess.run(["bash", str(CLUSTER_SCRIPTS / script), *args], cwd=REPO_ROOT,
                              env={**cluster_script_env(name), **(settings or {})}, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"CLUSTER={name} tests/cluster/{script} {' '.join(args)} did not finish "
                             f"within {timeout:g}s") from exc


def _script_failed(proc: subprocess.CompletedProcess[str], what: str) -> str:
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
    return f"{what} failed (exit {proc.returncode}):\n{tail}"


@dataclass
class MemberCluster:
    """A member cluster: ``name``, ``kubeconfig`` (path) and, for a local one, control of its processes.

    ``stop()`` / ``start()`` take its control plane down and bring the same cluster back (etcd
    data, certificates, ports and so the kubeconfig stay), for failover tests. Only for local
    members: on one from SUANLI_MEMBER_KUBECONFIGS they skip the test.
    """

    name: str
    kubeconfig: str
    external: bool = False
    started_here: bool = False
    stopped: set[str] = field(default_factory=set)
    _api_client: Any = field(default=None, repr=False)

    @property
    def is_local(self) -> bool:
        return not self.external

    @property
    def state_dir(self) -> Path | None:
        """Its local state (``.cluster/NAME``), None for an external member."""
        return None if self.external else local_cluster_dir(self.name)

    @property
    def api_client(self) -> Any:
        """A Kubernetes API client for it (made on first use)."""
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=self.kubeconfig)
        return self._api_client

    def ports(self) -> dict[str, int]:
        """The ports of a local member's components (its ports.env), e.g. ``{"APISERVER_PORT": 23456, ...}``."""
        self._require_local("its ports are known for local members only")
        assert self.state_dir is not None
        pairs = (line.split("=", 1) for line in (self.state_dir / "ports.env").read_text().splitlines())
        return {key: int(value) for key, value in pairs}

    def _require_local(self, why: str) -> None:
        if self.external:
            pytest.skip(f"member cluster {self.name} comes from {MEMBER_KUBECONFIGS_ENV} ({self.kubeconfig}): {why}")

    def stop(self, *components: str) -> None:
        """Stop its control plane (all components, or the ones named), keeping its state."""
        self._require_local("its control plane is not ours to stop")
        names = components or CONTROL_PLANE_COMPONENTS
        unknown = set(names) - set(CONTROL_PLANE_COMPONENTS)
        assert not unknown, f"unknown components {sorted(unknown)}; one of {CONTROL_PLANE_COMPONENTS}"
        proc = _run_script("restart.sh", "--stop", *names, name=self.name, timeout=120)
        assert proc.returncode == 0, _script_failed(proc, f"stopping member cluster {self.name}")
        self.stopped.update(names)

    def start(self) -> float:
        """Start every component of it that is not running (the same cluster, same ports); returns once all
        are healthy, with the seconds it took."""
        self._require_local("its control plane is not ours to start")
        start = time.monotonic()
        proc = _run_script("restart.sh", "--start", name=self.name, timeout=180)
        assert proc.returncode == 0, _script_failed(proc, f"starting member cluster {self.name}")
        self.stopped.clear()
        return time.monotonic() - start

    def down(self) -> None:
        """Stop it and remove its state (tests/cluster/down.sh); a later ``member_cluster(name)`` starts a fresh one."""
        self._require_local("it is not ours to remove")
        proc = _run_script("down.sh", name=self.name, timeout=120)
        assert proc.returncode == 0, _script_failed(proc, f"removing member cluster {self.name}")
        self.stopped.clear()
        self._api_client = None


def _bring_up_member(name: str) -> MemberCluster:
    kubeconfig = local_cluster_dir(name) / "kubeconfig"
    started_here = not kubeconfig.exists()
    try:
        proc = _run_script("up.sh", name=name, timeout=MEMBER_UP_TIMEOUT_S)
    except AssertionError as exc:
        pytest.fail(f"member cluster {name}: {exc} (SUANLI_MEMBER_UP_TIMEOUT_SECONDS)", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(_script_failed(proc, f"member cluster {name}: CLUSTER={name} tests/cluster/up.sh"), pytrace=False)
    return MemberCluster(name=name, kubeconfig=str(kubeconfig), started_here=started_here)


@pytest.fixture(scope="session")
def member_cluster() -> Iterator[Callable[..., MemberCluster]]:
    """``member_cluster(name, stoppable=False)``: the member cluster of that name (``MemberCluster``).

    Local (default): brought up with ``CLUSTER=name tests/cluster/up.sh`` on first use in the session
    (a healthy one is reused), its own processes and free ports, kubeconfig ``.cluster/<name>/kubeconfig``;
    one that an earlier test left stopped is started again. Left running after the session, unless
    ``SUANLI_CLUSTER_STOP=1`` (then the ones this session started are removed).
    With ``SUANLI_MEMBER_KUBECONFIGS`` set: those clusters, nothing started; a name it lacks skips the
    test, and so does ``stoppable=True`` (the test wants to stop and start the member's control plane).
    """
    members: dict[str, MemberCluster] = {}
    configured = os.environ.get(MEMBER_KUBECONFIGS_ENV)
    try:
        external = parse_member_kubeconfigs(configured) if configured else None
    except ValueError as exc:
        pytest.fail(str(exc), pytrace=False)

    def get(name: str, *, stoppable: bool = False) -> MemberCluster:
        if external is not None:
            if name not in external:
                pytest.skip(f"{MEMBER_KUBECONFIGS_ENV} names no member cluster {name!r} (it has: {sorted(external)})")
            if not Path(external[name]).is_file():
                pytest.fail(f"{MEMBER_KUBECONFIGS_ENV}: the kubeconfig of {name}, {external[name]}, is not a file",
                            pytrace=False)
            member = members.setdefault(name, MemberCluster(name=name, kubeconfig=external[name], external=True))
            if stoppable:
                member._require_local("this test stops and starts its control plane, which only works for local members")
            return member
        check_cluster_name(name)
        if name == HUB_CLUSTER_NAME and not _STATE.external:
            raise ValueError(f"{name!r} is the cluster under test (CLUSTER={name}), not a member")
        member = members.get(name)
        if member is not None and member.stopped:
            member.start()  # an earlier test stopped it (and failed before starting it again)
        if member is None or not Path(member.kubeconfig).exists():
            fresh = _bring_up_member(name)
            fresh.started_here = fresh.started_here or (member is not None and member.started_here)
            members[name] = member = fresh
        return member

    yield get
    if os.environ.get("SUANLI_CLUSTER_STOP") == "1":
        for member in members.values():
            if member.started_here and member.is_local:
                member.down()


# --- a namespace per test -------------------------------------------------------------


def _namespace_name(node_name: str) -> str:
    stem = re.sub(r"[^a-z0-9-]+", "-", node_name.lower()).strip("-")[:40].strip("-")
    return f"t-{stem}-{uuid.uuid4().hex[:5]}"


def _namespace_gone(core_v1: Any, name: str) -> bool:
    from kubernetes.client.exceptions import ApiException

    try:
        core_v1.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


@pytest.fixture(scope="session")
def _deleted_namespaces(core_v1: Any) -> Iterator[list[str]]:
    """Namespaces the tests deleted; at the end of the session they must all be gone (deadline)."""
    deleted: list[str] = []
    yield deleted
    for name in deleted:
        wait_for_value(
            lambda name=name: _namespace_gone(core_v1, name),
            NAMESPACE_TIMEOUT_S,
            lambda name=name: core_v1.read_namespace(name).status,
            what=f"test namespace {name} to be deleted",
        )


@pytest.fixture
def namespace(core_v1: Any, request: pytest.FixtureRequest, _deleted_namespaces: list[str]) -> Iterator[str]:
    """A fresh namespace for this test (its default ServiceAccount exists); deleted afterwards.

    Deletion is not awaited per test (the namespace controller takes seconds); the session
    checks at its end, with a deadline, that every test namespace is gone.
    """
    from kubernetes.client.exceptions import ApiException

    name = _namespace_name(request.node.name)
    core_v1.create_namespace({"metadata": {"name": name, "labels": {TEST_NAMESPACE_LABEL: "true"}}})
    # Pods are refused until the ServiceAccount controller made "default".
    wait_for_value(
        lambda: core_v1.read_namespaced_service_account("default", name),
        NAMESPACE_TIMEOUT_S,
        f"the default ServiceAccount in namespace {name}",
    )
    yield name
    # Pods go first and at once: a pod whose fake node is already gone would otherwise
    # wait ~1 minute for the pod garbage collector before the namespace can go.
    with contextlib.suppress(ApiException):
        core_v1.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    with contextlib.suppress(ApiException):
        core_v1.delete_namespace(name, propagation_policy="Background")
    _deleted_namespaces.append(name)


# --- fake nodes ------------------------------------------------------------------------


def node_ready(node: Any) -> bool:
    """Ready condition True and no not-ready/unreachable taint left (so the scheduler may use it)."""
    ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
    tainted = any(
        t.key.startswith("node.kubernetes.io/not-ready") or t.key.startswith("node.kubernetes.io/unreachable")
        for t in (node.spec.taints or [])
    )
    return ready and not tainted


@pytest.fixture
def fake_nodes(core_v1: Any) -> Iterator[Callable[..., list[str]]]:
    """``make(centers, nodes_per_pool=1)``: kwok nodes for ComputeCenter dicts or YAML paths, Ready.

    Every node made is deleted after the test. Returns the node names.
    """
    made: list[str] = []

    def make(
        centers: Any, *, nodes_per_pool: int | None = 1, max_nodes_per_pool: int | None = None
    ) -> list[str]:
        if isinstance(centers, (str, os.PathLike)):
            centers = fake_nodes_module.load_centers([centers])
        elif isinstance(centers, dict):
            centers = [centers]
        nodes = fake_nodes_module.nodes_for_centers(
            centers, nodes_per_pool=nodes_per_pool, max_nodes_per_pool=max_nodes_per_pool
        )
        names = fake_nodes_module.apply_nodes(core_v1, nodes)
        made.extend(names)
        for name in names:
            wait_for_value(
                lambda name=name: node_ready(core_v1.read_node(name)),
                NODE_READY_TIMEOUT_S,
                lambda name=name: _describe_node(core_v1.read_node(name)),
                what=f"fake node {name} to become Ready (is kwok running and watching "
                f"nodes annotated kwok.x-k8s.io/node=fake?)",
            )
        return names

    yield make
    _force_delete_pods_on(core_v1, made)
    fake_nodes_module.delete_nodes(core_v1, made)


def _force_delete_pods_on(core_v1: Any, node_names: list[str]) -> None:
    """Delete (grace 0) the pods still bound to these nodes: without the node, nothing would finish them."""
    from kubernetes.client.exceptions import ApiException

    for node in node_names:
        for pod in core_v1.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items:
            with contextlib.suppress(ApiException):
                core_v1.delete_namespaced_pod(
                    pod.metadata.name, pod.metadata.namespace, grace_period_seconds=0
                )


def _describe_node(node: Any) -> str:
    conditions = {c.type: c.status for c in (node.status.conditions or [])}
    taints = [f"{t.key}:{t.effect}" for t in (node.spec.taints or [])]
    return f"conditions={conditions} taints={taints}"
