"""A kubeconfig that acts as a ServiceAccount (a TokenRequest token), to run the operator or
kubectl with exactly the chart's RBAC — no admin rights leaking into a test.

    python tests/tools/sa_kubeconfig.py --kubeconfig .cluster/kubeconfig \\
        --namespace suanli-system --service-account suanli --out /tmp/suanli-sa.kubeconfig
    suanli run --kubeconfig /tmp/suanli-sa.kubeconfig      # the operator as the chart runs it

From Python (e.g. an e2e fixture that installed the chart with helm):

    from tests.tools import sa_kubeconfig
    path = sa_kubeconfig.write(admin_kubeconfig, "suanli-system", "suanli", tmp_path / "sa.kubeconfig")

The token comes from the TokenRequest API (`kubectl create token`), bound to the
ServiceAccount and expiring after --duration (default 2h); nothing is stored in the cluster.
The server and CA are copied from the admin kubeconfig's current context.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def kubectl() -> str:
    """The local control plane's kubectl if there is one, else the one on PATH."""
    local = ROOT / ".cluster" / "bin" / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise FileNotFoundError("kubectl not found: run `make cluster-up` or put kubectl on PATH")
    return found


def request_token(
    kubeconfig: str | os.PathLike[str], namespace: str, service_account: str, duration: str = "2h"
) -> str:
    proc = subprocess.run(
        [
            kubectl(),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            "create",
            "token",
            service_account,
            f"--duration={duration}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"could not get a token for ServiceAccount {namespace}/{service_account} "
            f"(does it exist? is the chart installed?): {proc.stderr.strip()}"
        )
    return proc.stdout.strip()


def _current_cluster(config: dict[str, Any], base: Path) -> dict[str, Any]:
    context_name = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
    if context_name not in contexts:
        raise ValueError(f"kubeconfig has no current context {context_name!r}")
    cluster_name = contexts[context_name]["cluster"]
    cluster = dict(next(c["cluster"] for c in config["clusters"] if c["name"] == cluster_name))
    ca_file = cluster.pop("certificate-authority", None)
    if ca_file:  # embed it, so the new kubeconfig works from anywhere
        ca_path = Path(ca_file) if Path(ca_file).is_absolute() else base / ca_file
        cluster["certificate-authority-data"] = base64.b64encode(ca_path.read_bytes()).decode()
    return cluster


def build(
    kubeconfig: str | os.PathLike[str], namespace: str, service_account: str, token: str
) -> dict[str, Any]:
    path = Path(kubeconfig)
    cluster = _current_cluster(yaml.safe_load(path.read_text()), path.parent)
    user = f"system:serviceaccount:{namespace}:{service_account}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "suanli", "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {"name": "suanli-sa", "context": {"cluster": "suanli", "user": user, "namespace": namespace}}
        ],
        "current-context": "suanli-sa",
    }


def write(
    kubeconfig: str | os.PathLike[str],
    namespace: str,
    service_account: str,
    out: str | os.PathLike[str],
    duration: str = "2h",
) -> Path:
    """Write a kubeconfig acting as the ServiceAccount; returns its path (mode 0600)."""
    token = request_token(kubeconfig, namespace, service_account, duration)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(build(kubeconfig, namespace, service_account, token), handle, sort_keys=False)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG", str(ROOT / ".cluster" / "kubeconfig"))
    )
    parser.add_argument("--namespace", "-n", default="suanli-system", help="namespace of the ServiceAccount")
    parser.add_argument(
        "--service-account", default="suanli", help="ServiceAccount name (the chart's: release fullname)"
    )
    parser.add_argument("--duration", default="2h", help="token lifetime, e.g. 30m, 2h")
    parser.add_argument("--out", "-o", required=True, help="where to write the kubeconfig")
    args = parser.parse_args(argv)
    try:
        path = write(args.kubeconfig, args.namespace, args.service_account, args.out, args.duration)
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
