"""Argo CD health checks (helm/argocd/health/*.lua) run in a real Lua 5.1 on every fixture.

Argo CD runs them in gopher-lua (Lua 5.1) with `obj` set to the live object and only the base,
table, string and math libraries open; the runner below does the same (setfenv with just those),
so a script using os/io/require fails here as it would in Argo CD.
Fixtures: tests/unit/argocd_fixtures/*.json, plus any in $SUANLI_ARGOCD_FIXTURES_DIR (captured by e2e).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools import helmkit  # noqa: E402

HEALTH = ROOT / "helm" / "argocd" / "health"
SCRIPTS = {"ComputeJob": HEALTH / "computejob.lua", "ComputeCenter": HEALTH / "computecenter.lua"}
ARGO_HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def _fixture_files() -> list[Path]:
    files = sorted((Path(__file__).parent / "argocd_fixtures").glob("*.json"))
    extra = os.environ.get("SUANLI_ARGOCD_FIXTURES_DIR")
    if extra:
        files += sorted(Path(extra).glob("*.json"))
    return files


def lua_literal(value: Any) -> str:
    """A JSON value as a Lua 5.1 expression, converted the way Argo CD does (null -> nil)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"not a JSON number: {value}")
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        items = [f"[{_lua_string(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"not a JSON value: {value!r}")


def _lua_string(text: str) -> str:
    """A Lua string literal: every byte outside printable ASCII (and quote, backslash) as \\ddd."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


RUNNER = """
obj = {obj}
local check = assert(loadfile({script}))
local env = {{obj = obj, ipairs = ipairs, pairs = pairs, next = next, tostring = tostring,
  tonumber = tonumber, type = type, select = select, error = error, pcall = pcall, assert = assert,
  string = string, table = table, math = math}}
setfenv(check, env)
local hs = check()
assert(type(hs) == "table", "the health script must return a table")
io.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")
"""


def run_health(script: Path, obj: dict[str, Any]) -> tuple[str, str]:
    source = RUNNER.format(obj=lua_literal(obj), script=_lua_string(str(script)))
    proc = subprocess.run(
        [helmkit.tool("lua"), "-"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, f"{script.name} failed in Lua 5.1:\n{proc.stderr}"
    status, message = proc.stdout.split("\n", 1)
    return status, message.rstrip("\n")


@pytest.mark.parametrize("fixture", _fixture_files(), ids=lambda p: p.stem)
def test_health_of_fixture(fixture: Path) -> None:
    doc = json.loads(fixture.read_text())
    expected = doc["expectedHealth"]
    obj = doc["object"]
    script = SCRIPTS[obj["kind"]]
    status, message = run_health(script, obj)
    assert status in ARGO_HEALTH
    assert status == expected["status"], (
        f"{fixture.name}: {status} ({message}), expected {expected['status']}"
    )
    assert expected.get("messageContains", "") in message, f"{fixture.name}: message {message!r}"
    assert message, "Argo CD shows the message to the person looking at the app: never empty"


def test_fixtures_cover_every_phase_and_health() -> None:
    from suanli.api import status as status_api

    phases = set()
    healths: dict[str, set[str]] = {"ComputeJob": set(), "ComputeCenter": set()}
    for fixture in _fixture_files():
        doc = json.loads(fixture.read_text())
        obj = doc["object"]
        healths[obj["kind"]].add(doc["expectedHealth"]["status"])
        if obj["kind"] == "ComputeJob":
            phases.add((obj.get("status") or {}).get("phase"))
    assert set(status_api.PHASES) <= phases, f"phases without a fixture: {set(status_api.PHASES) - phases}"
    assert None in phases, "a ComputeJob without status needs a fixture"
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= healths["ComputeJob"]
    assert {"Healthy", "Progressing", "Degraded"} <= healths["ComputeCenter"]


def test_sandbox_refuses_os_and_io(tmp_path: Path) -> None:
    """The runner is as strict as Argo CD: a script calling os.* fails (so the test above means something)."""
    bad = tmp_path / "bad.lua"
    bad.write_text('local hs = {}\nhs.status = "Healthy"\nhs.message = os.date()\nreturn hs\n')
    source = RUNNER.format(obj=lua_literal({"kind": "ComputeJob"}), script=_lua_string(str(bad)))
    proc = subprocess.run(
        [helmkit.tool("lua"), "-"], input=source, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode != 0 and "os" in proc.stderr


def test_application_health_passes_child_health_through() -> None:
    script = HEALTH / "application.lua"
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "suanli"}}
    assert run_health(script, app)[0] == "Progressing"
    app["status"] = {"health": {"status": "Degraded", "message": "Deployment suanli: 0/2 ready"}}
    assert run_health(script, app) == ("Degraded", "Deployment suanli: 0/2 ready")


def test_lua_literal_round_trips_unicode_and_quotes() -> None:
    obj = {"kind": "ComputeJob", "status": {"phase": "Failed", "message": 'Gui\'an "贵安" \\ fail\nline 2'}}
    status, message = run_health(SCRIPTS["ComputeJob"], obj)
    assert (status, message) == ("Degraded", 'Gui\'an "贵安" \\ fail\nline 2')


# --- the Argo CD manifests -----------------------------------------------------------


def _apps() -> dict[str, dict[str, Any]]:
    docs = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "helm" / "argocd" / "apps").glob("*.yaml"))]
    return {d["metadata"]["name"]: d for d in docs}


def test_sync_waves_put_crds_before_the_operator_before_custom_resources() -> None:
    apps = _apps()
    wave = {
        name: int(app["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
        for name, app in apps.items()
    }
    assert wave["suanli-crds"] < wave["suanli"] < wave["suanli-examples"]
    assert apps["suanli-crds"]["spec"]["source"]["path"] == "crds"
    assert apps["suanli-crds"]["spec"]["source"]["directory"]["recurse"] is False
    assert apps["suanli-crds"]["spec"]["syncPolicy"]["automated"]["prune"] is False, (
        "pruning a CRD deletes every CR"
    )
    assert apps["suanli"]["spec"]["source"]["path"] == "helm/suanli"
    assert apps["suanli"]["spec"]["source"]["helm"]["skipCrds"] is True, "one owner per CRD: suanli-crds"
    assert "SkipDryRunOnMissingResource=true" in apps["suanli-examples"]["spec"]["syncPolicy"]["syncOptions"]
    for path in ("crds", "helm/suanli", "crds/examples"):
        assert (ROOT / path).is_dir(), f"an Application points at {path}, which does not exist"
    root = yaml.safe_load((ROOT / "helm" / "argocd" / "root-app.yaml").read_text())
    assert root["spec"]["source"]["path"] == "helm/argocd/apps"
    repos = {app["spec"]["source"]["repoURL"] for app in [*apps.values(), root]}
    assert len(repos) == 1, f"every Application should point at the same repository: {repos}"


def test_operator_app_values_pass_the_chart_schema(tmp_path: Path) -> None:
    values = _apps()["suanli"]["spec"]["source"]["helm"]["valuesObject"]
    proc = helmkit.helm_run(helmkit.template_cmd(values, tmp_dir=tmp_path, extra=["--skip-crds"]))
    assert proc.returncode == 0, proc.stderr


def test_argocd_cm_embeds_the_health_scripts() -> None:
    cm = yaml.safe_load((ROOT / "helm" / "argocd" / "argocd-cm.yaml").read_text())
    data = cm["data"]
    assert data["resource.customizations.health.suanli.io_ComputeJob"] == SCRIPTS["ComputeJob"].read_text()
    assert (
        data["resource.customizations.health.suanli.io_ComputeCenter"] == SCRIPTS["ComputeCenter"].read_text()
    )
    assert "resource.customizations.health.argoproj.io_Application" in data
