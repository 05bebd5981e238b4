"""The operator from its image, run the way the chart's Deployment runs it, places the example jobs.

The image is built from this checkout with podman on the local Debian base (`make image
IMAGE_BASE=local`, tests/tools/image.sh; cached, seconds when warm). The chart is installed with the
real Helm (its ServiceAccount, RBAC and ConfigMap; the Deployment scaled to 0, as there is no kubelet),
and the container gets what the Deployment gives its pod:

- user 65532:65532, a read-only root filesystem with /tmp the only writable place (a 64 MiB tmpfs, the
  chart's emptyDir), every capability dropped, no-new-privileges, podman's default seccomp profile;
- the chart's ConfigMap at /etc/suanli/config.yaml and its args (--config, --metrics-port,
  --health-port, --namespace) and env (SUANLI_NAMESPACE, SUANLI_POD_NAME, SUANLI_LEADER_ELECTION,
  SUANLI_LEASE_NAME, PYTHON*);
- the in-cluster credentials: a TokenRequest token of the chart's ServiceAccount, the cluster CA and
  the namespace in /var/run/secrets/kubernetes.io/serviceaccount (read-only), KUBERNETES_SERVICE_HOST
  and _PORT naming the API server (any kubeconfig's: the container shares the host's network).

Differences, because this is a container on the host's network and not a pod: the ports are free
ones on 127.0.0.1 (--metrics-address/--health-address; 8080/8081 may be taken on a shared host), and
no CPU/memory limits are set (cgroup v1 with cgroupfs here). Then the example centers (renamed, at
most 4 fake nodes per pool) and the example jobs: each bound job must succeed in the pool its
`# expect:` names; the others must agree with `suanli plan`. Finally `podman stop` (SIGTERM) must
end the container with exit code 0 within the chart's terminationGracePeriodSeconds.

Measured and written to reports/image/image.json (and docs/image.md): the image's size, the seconds
from `podman run` to /healthz answering 200 (what the chart's probes ask) and to /metrics answering.
Fails, never skips, when podman cannot run a container here, and says so.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e import helpers
from tests.e2e.helpers import EXPECT_TIMEOUT_S, GROUP, VERSION
from tests.tools import helmkit, imagekit, sa_kubeconfig

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(int(imagekit.BUILD_TIMEOUT_S) + 900)]

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "reports" / "image" / "image.json"
MAX_NODES = 4
UID = 65532
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
START_TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def image() -> tuple[str, float]:
    try:
        built = imagekit.ensure_image()
        imagekit.can_run(built[0])
    except imagekit.ImageError as exc:
        failure = str(exc)
    else:
        return built
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="module")
def release(kube: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with helpers.helm_release(kube.kubeconfig, tmp_path_factory.mktemp("release")) as rel:
        yield rel


def _readable_dir(path: Path, files: dict[str, str | bytes]) -> Path:
    """A folder the container's user 65532 can read (0755/0644, like a projected volume's defaults)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    for name, content in files.items():
        target = path / name
        target.write_bytes(content.encode() if isinstance(content, str) else content)
        target.chmod(0o644)
    return path


def in_cluster_credentials(admin_kubeconfig: str, namespace: str, sa: str, folder: Path) -> tuple[Path, str, str]:
    """The ServiceAccount's token, the cluster's CA and the namespace, as the kubelet mounts them into
    a pod, and the API server's host and port (for KUBERNETES_SERVICE_HOST/_PORT)."""
    kubeconfig = sa_kubeconfig.write(admin_kubeconfig, namespace, sa, folder / "sa.kubeconfig", "1h")
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]
    assert "certificate-authority-data" in cluster, f"{kubeconfig}: expected the CA embedded by sa_kubeconfig"
    server = urllib.parse.urlsplit(cluster["server"])
    assert server.scheme == "https" and server.hostname and server.port, f"unexpected API server URL {cluster['server']}"
    creds = _readable_dir(folder / "serviceaccount", {
        "token": user["token"],
        "ca.crt": base64.b64decode(cluster["certificate-authority-data"]),
        "namespace": namespace,
    })
    return creds, server.hostname, str(server.port)


def chart_container(image: str, release: dict[str, str], creds: Path, host: str, port: str, config_dir: Path,
                    metrics_port: int, health_port: int) -> imagekit.Container:
    """The chart's Deployment (helm/suanli/templates/deployment.yaml, values.yaml) as one podman run."""
    values = yaml.safe_load((helmkit.CHART / "values.yaml").read_text())
    security, pod_security = values["securityContext"], values["podSecurityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    assert not security["allowPrivilegeEscalation"] and pod_security["runAsUser"] == UID
    name = f"suanli-e2e-{uuid.uuid4().hex[:6]}"
    run_args = [
        "--network", "host",
        "--user", f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}",
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,size=64m,mode=1777",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        *imagekit.ulimits(),
        "--volume", f"{config_dir}:/etc/suanli:ro",
        "--volume", f"{creds}:{SA_DIR}:ro",
        "--env", f"KUBERNETES_SERVICE_HOST={host}", "--env", f"KUBERNETES_SERVICE_PORT={port}",
        "--env", f"SUANLI_NAMESPACE={release['namespace']}", "--env", f"SUANLI_POD_NAME={name}",
        "--env", f"SUANLI_LEADER_ELECTION={values['leaderElection']['mode']}",
        "--env", f"SUANLI_LEASE_NAME={values['leaderElection']['leaseName']}",
        "--env", "PYTHONDONTWRITEBYTECODE=1", "--env", "PYTHONUNBUFFERED=1",
    ]
    args = [
        "run", "--config=/etc/suanli/config.yaml",
        f"--metrics-port={metrics_port}", f"--health-port={health_port}", f"--namespace={release['namespace']}",
        "--metrics-address=127.0.0.1", "--health-address=127.0.0.1",
    ]
    return imagekit.Container(image, name, run_args, args, grace_s=float(values["terminationGracePeriodSeconds"]))


def wait_http_200(container: imagekit.Container, url: str) -> float:
    """Seconds from the container's start until ``url`` answers 200; fails with the log if it exits."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while helpers.http_status(url, 1.0) != 200:
        state = container.state()
        assert state.get("Running"), f"the container exited ({state.get('ExitCode')}) before {url} answered:\n{container.log_tail()}"
        assert time.monotonic() < deadline, f"{url} did not answer 200 within {START_TIMEOUT_S:g}s:\n{container.log_tail()}"
        time.sleep(0.1)
    return time.monotonic() - container.started_at


def confinement(container: imagekit.Container) -> dict[str, Any]:
    """What the operator's process (PID 1) really has: uid/gid, capabilities, no_new_privs, and
    whether / and /tmp take a write (read from inside the running container)."""
    probe = (
        "import json,os\n"
        "s=dict(l.split(':',1) for l in open('/proc/1/status').read().splitlines() if ':' in l)\n"
        "def w(p):\n"
        "    try:\n"
        "        open(p,'w').close(); os.remove(p); return 'writable'\n"
        "    except OSError as e: return e.strerror\n"
        "print(json.dumps({'uid':s['Uid'].split()[0],'gid':s['Gid'].split()[0],'capEff':s['CapEff'].strip(),"
        "'capBnd':s['CapBnd'].strip(),'noNewPrivs':s['NoNewPrivs'].strip(),'seccomp':s['Seccomp'].strip(),"
        "'root':w('/probe'),'etc':w('/etc/suanli/probe'),'tmp':w('/tmp/probe')}))\n"
    )
    proc = imagekit.podman("exec", container.name, "python3", "-c", probe, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_operator_from_the_image_as_the_chart_runs_it_places_the_example_jobs(
    kube, image, release, namespace, custom_objects, batch_v1, fake_nodes, wait_for, tmp_path: Path
) -> None:
    from suanli.api import manifests
    from suanli.commands import plan as plan_cmd

    image_ref, build_s = image
    facts = imagekit.inspect(image_ref)
    assert facts["Config"]["User"] == f"{UID}:{UID}", facts["Config"]
    creds, host, port = in_cluster_credentials(kube.kubeconfig, release["namespace"], release["sa"], tmp_path)
    config_dir = _readable_dir(tmp_path / "config", {"config.yaml": Path(release["config"]).read_text()})
    metrics_port, health_port = helpers.free_port(), helpers.free_port()
    container = chart_container(image_ref, release, creds, host, port, config_dir, metrics_port, health_port)

    suffix = uuid.uuid4().hex[:5]
    fleet, renamed = helpers.example_fleet(suffix, MAX_NODES)
    fake_nodes(fleet, nodes_per_pool=None, max_nodes_per_pool=MAX_NODES)
    center_names = [c["metadata"]["name"] for c in fleet]
    container.start()
    stopped: tuple[int, float] | None = None
    try:
        ready_s = wait_http_200(container, f"http://127.0.0.1:{health_port}/healthz")
        metrics_s = wait_http_200(container, f"http://127.0.0.1:{metrics_port}/metrics")
        confined = confinement(container)
        assert confined == {
            "uid": str(UID), "gid": str(UID), "capEff": "0000000000000000", "capBnd": "0000000000000000",
            "noNewPrivs": "1", "seccomp": "2", "root": "Read-only file system", "etc": "Read-only file system",
            "tmp": "writable",
        }, confined

        for doc in fleet:
            custom_objects.create_cluster_custom_object(GROUP, VERSION, "computecenters", doc)

        def all_ready() -> bool:
            return all(helpers.center_conditions(helpers.get_center(custom_objects, n)).get("Ready") == "True"
                       for n in center_names)

        wait_for(all_ready, EXPECT_TIMEOUT_S, lambda: {n: helpers.center_conditions(helpers.get_center(custom_objects, n))
                                                       for n in center_names} | {"log": container.log_tail(15)},
                 what="every example center Ready (its status written by the operator in the container)")

        jobs = helpers.example_jobs(namespace)
        loaded = manifests.parse_text(yaml.safe_dump_all([*fleet, *(d for d, _ in jobs)]), "examples")
        planned = {e["name"]: e for e in plan_cmd.plan_manifests(loaded, time.time())["jobs"]}
        for doc, _ in jobs:
            custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "computejobs", doc)

        def settled() -> dict[str, str] | None:
            current = helpers.job_phases(custom_objects, namespace)
            waiting = {n: p for n, p in current.items() if p not in (*helpers.FINAL, "Queued", "Deferred")}
            return None if waiting or len(current) < len(jobs) else current

        final = wait_for(settled, EXPECT_TIMEOUT_S, lambda: {**helpers.job_phases(custom_objects, namespace),
                                                             "log": container.log_tail(15)},
                         what="every example job to settle")
        bound = helpers.assert_example_outcomes(custom_objects, batch_v1, namespace, jobs, final, planned, renamed)
        assert bound, "no example job expects a pool: crds/examples/jobs.yaml lost its `# expect:` lines"
        exposition = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        binds = helpers.metric_value(exposition, "suanli_job_bind_latency_seconds_count")
        assert binds >= len(bound), f"the container's operator recorded {binds} binds, expected >= {len(bound)}"
        refusals = [line for line in container.logs().splitlines() if " 403" in line or "forbidden" in line.lower()]
        assert not refusals, "the API server refused the operator in the container:\n" + "\n".join(refusals[:20])

        helpers.delete_centers(custom_objects, center_names)  # while it runs: it takes its finalizers off
        stopped = container.stop()
    finally:
        if stopped is None:
            helpers.delete_centers(custom_objects, center_names)
        logs = container.logs()
        (tmp_path / "container.log").write_text(logs)
        container.remove()
        helpers.release_finalizers(custom_objects, namespace, center_names)

    exit_code, stop_s = stopped
    assert exit_code == 0, f"SIGTERM ended the container with exit code {exit_code}, expected 0:\n{logs[-3000:]}"
    assert stop_s < container.grace_s, f"the container took {stop_s:.1f}s to stop, the grace period is {container.grace_s:g}s"
    report = {
        "image": image_ref,
        "base": facts["Config"].get("Labels", {}).get("io.suanli.base", ""),
        "sizeBytes": facts["Size"],
        "sizeMiB": round(facts["Size"] / 2**20, 1),
        "buildSeconds": round(build_s, 1),
        "startToHealthzSeconds": round(ready_s, 2),
        "startToMetricsSeconds": round(metrics_s, 2),
        "sigtermToExitSeconds": round(stop_s, 2),
        "exampleJobsBound": len(bound),
        "measuredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
