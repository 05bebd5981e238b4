"""Helpers for the chart and Argo CD tests: find (or install) helm/promtool/luaharness and render the chart.

Tools live in ``${SUANLI_CACHE:-~/.cache/suanli}/bin`` (outside the repo) and are installed by
``tests/tools/install_tools.sh`` on first use. With ``SUANLI_QUICK=1`` (a quick local
``make unit``) a missing tool skips its tests with a message saying how to install it instead
of installing it; everywhere else (``make test``, CI) a missing tool is installed or the test fails.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "suanli"
ARGOCD = ROOT / "helm" / "argocd"
INSTALL_SCRIPT = ROOT / "tests" / "tools" / "install_tools.sh"
CACHE_BIN = Path(os.environ.get("SUANLI_CACHE", str(Path.home() / ".cache" / "suanli"))) / "bin"
# The Kubernetes version the chart is rendered for (the local control plane's minor).
KUBE_VERSION = os.environ.get("SUANLI_TEST_KUBE_VERSION", "1.36.0")
INSTALL_TIMEOUT_S = float(os.environ.get("SUANLI_TOOL_INSTALL_TIMEOUT_SECONDS", "1800"))
HELM_TIMEOUT_S = 120
# kopf's peering kind, which leaderElection.mode=kopfPeering needs in the cluster.
KOPF_PEERING_API = "kopf.dev/v1/ClusterKopfPeering"

_EXECUTABLES = {"helm": "helm", "promtool": "promtool", "luaharness": "luaharness", "hadolint": "hadolint"}


def quick_mode() -> bool:
    return os.environ.get("SUANLI_QUICK") == "1" and os.environ.get("CI") != "true"


def _find(executable: str) -> str | None:
    cached = CACHE_BIN / executable
    if cached.is_file() and os.access(cached, os.X_OK):
        return str(cached)
    return shutil.which(executable)


@functools.cache
def _install(tool: str) -> str | None:
    """Run install_tools.sh for one tool; the error text, or None when it worked."""
    try:
        proc = subprocess.run(
            ["bash", str(INSTALL_SCRIPT), tool],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"tests/tools/install_tools.sh {tool} did not finish within {INSTALL_TIMEOUT_S:g}s"
    if proc.returncode != 0:
        return f"tests/tools/install_tools.sh {tool} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return None


def tool(name: str) -> str:
    """Path of helm, promtool, luaharness or hadolint: installed at its pinned version, or the test skips/fails.

    Outside quick mode install_tools.sh runs once per session (a second when all is there).
    """
    executable = _EXECUTABLES[name]
    if quick_mode():
        found = _find(executable)
        if not found:
            pytest.skip(
                f"{executable} is not installed and SUANLI_QUICK=1 skips installing it; "
                f"run `bash tests/tools/install_tools.sh {name}` (make test installs it)"
            )
        return found
    error = _install(name)
    found = _find(executable)
    if error or not found:
        pytest.fail(
            f"{executable} is needed and could not be installed: {error or 'not found after install'}",
            pytrace=False,
        )
    return found


def values_args(values: Mapping[str, Any] | None, tmp_dir: Path | None) -> list[str]:
    if not values:
        return []
    directory = tmp_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"values-{abs(hash(yaml.safe_dump(dict(values), sort_keys=True)))}.yaml"
    path.write_text(yaml.safe_dump(dict(values), sort_keys=False))
    return ["--values", str(path)]


def helm_run(args: Iterable[str], *, timeout: float = HELM_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=timeout, check=False)


def template_cmd(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "suanli",
    namespace: str = "suanli-system",
    extra: Iterable[str] = (),
    tmp_dir: Path | None = None,
) -> list[str]:
    return [
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        *values_args(values, tmp_dir),
        *extra,
    ]


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "suanli",
    namespace: str = "suanli-system",
    extra: Iterable[str] = (),
    tmp_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """The chart rendered by the real Helm engine: every object (CRDs included), as dicts."""
    proc = helm_run(
        template_cmd(
            values,
            release=release,
            namespace=namespace,
            extra=["--include-crds", "--api-versions", KOPF_PEERING_API, *extra],
            tmp_dir=tmp_dir,
        )
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"helm template failed (exit {proc.returncode}) for values {values!r}:\n{proc.stderr}"
        )
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected exactly one {kind}, rendered {len(found)}"
    return found[0]
