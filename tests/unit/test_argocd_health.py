"""Argo CD health checks (helm/argocd/health/*.lua) run in Argo CD's own Lua VM on every fixture.

Argo CD evaluates health customizations with github.com/yuin/gopher-lua; tests/tools/luaharness is
a small Go program on that module (the version Argo CD pins) that calls a script the way Argo CD
does: `obj` is the object decoded from JSON like Kubernetes' unstructured objects, only the
package, base and table libraries and a safe os (time, date) are open, the returned table's
status/message are read through JSON, an unknown status becomes Unknown. `-check` compares each
result with the fixture's expectedHealth. Fixtures: tests/unit/argocd_fixtures/*.json (hand-written
and captured from e2e runs by tests/tools/argocd_capture.py), plus any in
$SUANLI_ARGOCD_FIXTURES_DIR.
"""

from __future__ import annotations

import functools
import json
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
HARNESS_TIMEOUT_S = 60


def _fixture_files() -> list[Path]:
    files = sorted((Path(__file__).parent / "argocd_fixtures").glob("*.json"))
    extra = os.environ.get("SUANLI_ARGOCD_FIXTURES_DIR")
    if extra:
        files += sorted(Path(extra).glob("*.json"))
    return files


def run_harness(script: Path, files: list[Path], *, check: bool = False) -> tuple[int, list[dict[str, Any]], str]:
    """Run luaharness over files; its exit status, its per-file results and its stderr."""
    args = [helmkit.tool("luaharness"), "-script", str(script), *(["-check"] if check else []), *map(str, files)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=HARNESS_TIMEOUT_S, check=False)
    results = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc.returncode, results, proc.stderr


@functools.cache
def _checked(kind: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Every fixture of one kind through its script in one harness run (-check): exit status, results by file."""
    files = [f for f in _fixture_files() if json.loads(f.read_text())["object"]["kind"] == kind]
    code, results, stderr = run_harness(SCRIPTS[kind], files, check=True)
    assert code in (0, 1) and len(results) == len(files), f"luaharness failed (exit {code}):\n{stderr}"
    return code, {r["file"]: r for r in results}


def health_of(script: Path, obj: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """One object (not a fixture) through the harness: its result {status, message, error}."""
    path = tmp_path / f"object-{len(list(tmp_path.glob('object-*.json')))}.json"
    path.write_text(json.dumps(obj, ensure_ascii=False))
    code, results, stderr = run_harness(script, [path])
    assert code in (0, 1) and len(results) == 1, f"luaharness failed (exit {code}):\n{stderr}"
    return results[0]


@pytest.mark.parametrize("fixture", _fixture_files(), ids=lambda p: p.stem)
def test_health_of_fixture(fixture: Path) -> None:
    doc = json.loads(fixture.read_text())
    expected = doc["expectedHealth"]
    _, results = _checked(doc["object"]["kind"])
    got = results[str(fixture)]
    assert "error" not in got, f"{fixture.name}: the script failed in gopher-lua: {got['error']}"
    assert got["status"] in ARGO_HEALTH
    assert got["status"] == expected["status"], (
        f"{fixture.name}: {got['status']} ({got['message']}), expected {expected['status']}"
    )
    assert expected.get("messageContains", "") in got["message"], f"{fixture.name}: message {got['message']!r}"
    assert got["message"], "Argo CD shows the message to the person looking at the app: never empty"
    assert "problems" not in got, f"{fixture.name}: the harness's -check disagrees: {got['problems']}"


def test_harness_check_passes_on_every_fixture_of_both_kinds() -> None:
    for kind in SCRIPTS:
        code, results = _checked(kind)
        assert results, f"no {kind} fixture"
        assert code == 0, [r for r in results.values() if "problems" in r]


def test_fixtures_cover_every_phase_and_health() -> None:
    from suanli.api import status as status_api

    phases = set()
    healths: dict[str, set[str]] = {"ComputeJob": set(), "ComputeCenter": set()}
    captured: dict[str, int] = {"ComputeJob": 0, "ComputeCenter": 0}
    for fixture in _fixture_files():
        doc = json.loads(fixture.read_text())
        obj = doc["object"]
        healths[obj["kind"]].add(doc["expectedHealth"]["status"])
        captured[obj["kind"]] += doc.get("source", "").startswith("e2e:")
        if obj["kind"] == "ComputeJob":
            phases.add((obj.get("status") or {}).get("phase"))
    assert set(status_api.PHASES) <= phases, f"phases without a fixture: {set(status_api.PHASES) - phases}"
    assert None in phases, "a ComputeJob without status needs a fixture"
    assert {"Healthy", "Progressing", "Degraded", "Suspended"} <= healths["ComputeJob"]
    assert {"Healthy", "Progressing", "Degraded"} <= healths["ComputeCenter"]
    assert all(captured.values()), f"fixtures captured from e2e runs per kind: {captured}"


# --- a broken script must fail ------------------------------------------------------------


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


def test_harness_fails_on_a_syntax_error(tmp_path: Path) -> None:
    broken = _script(tmp_path, "broken.lua", SCRIPTS["ComputeJob"].read_text().replace("then", "the", 1))
    code, results, _ = run_harness(broken, _fixture_files()[:3], check=True)
    assert code == 1
    assert all("error" in r and "problems" in r for r in results), results


def test_harness_fails_on_a_wrong_status(tmp_path: Path) -> None:
    """A script that calls every job Healthy passes no Running/Failed fixture: -check exits 1 and says why."""
    always = _script(tmp_path, "always.lua", 'local hs = {}\nhs.status = "Healthy"\nhs.message = "ok"\nreturn hs\n')
    running = ROOT / "tests" / "unit" / "argocd_fixtures" / "computejob-e2e-running.json"
    succeeded = ROOT / "tests" / "unit" / "argocd_fixtures" / "computejob-e2e-succeeded.json"
    code, results, _ = run_harness(always, [running, succeeded], check=True)
    assert code == 1
    assert results[0]["problems"] == ['status "Healthy", expected "Progressing"']
    assert "problems" not in results[1]


def test_harness_reads_returns_as_argocd_does(tmp_path: Path) -> None:
    """Argo CD maps a status outside its six to Unknown and rejects a non-table return."""
    obj = {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeJob", "metadata": {"name": "j"}}
    fine = _script(tmp_path, "fine.lua", 'return {status = "Fine", message = "x"}\n')
    assert health_of(fine, obj, tmp_path) == {
        "file": str(tmp_path / "object-0.json"),
        "status": "Unknown",
        "message": "Lua returned an invalid health status",
    }
    text = _script(tmp_path, "text.lua", 'return "Healthy"\n')
    assert health_of(text, obj, tmp_path)["error"] == "expect table output from Lua script, not string"


@pytest.mark.parametrize(
    ("expression", "available"),
    [
        ("string.format('%d', 1)", False),
        ("math.floor(1.5)", False),
        ("io.write('x')", False),
        ("os.exit(1)", False),
        ("os.getenv('HOME')", False),
        ("tostring(os.time())", True),
        ("os.date('!%Y')", True),
        ("table.concat({'a', 'b'}, ',')", True),
        ("tostring(#obj.spec.list)", True),
    ],
)
def test_libraries_are_argocds(expression: str, available: bool, tmp_path: Path) -> None:
    """Only what Argo CD opens for an argocd-cm health customization: base, table, os.time/os.date.

    (Lua 5.1 with string and math open, which these tests used before, let scripts call functions
    Argo CD does not give them.)
    """
    probe = _script(tmp_path, "probe.lua", f'return {{status = "Healthy", message = {expression}}}\n')
    got = health_of(probe, {"kind": "ComputeJob", "spec": {"list": [1, 2, 3]}}, tmp_path)
    if available:
        assert "error" not in got and got["status"] == "Healthy" and got["message"], got
    else:
        assert "attempt to" in got.get("error", ""), got


def test_application_health_passes_child_health_through(tmp_path: Path) -> None:
    script = HEALTH / "application.lua"
    app: dict[str, Any] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "suanli"}}
    assert health_of(script, app, tmp_path)["status"] == "Progressing"
    app["status"] = {"health": {"status": "Degraded", "message": "Deployment suanli: 0/2 ready"}}
    got = health_of(script, app, tmp_path)
    assert (got["status"], got["message"]) == ("Degraded", "Deployment suanli: 0/2 ready")


def test_unicode_quotes_and_nulls_reach_the_script(tmp_path: Path) -> None:
    obj = {
        "kind": "ComputeJob",
        "metadata": {"generation": 2},
        "status": {"phase": "Failed", "observedGeneration": None, "message": 'Gui\'an "贵安" \\ fail\nline 2'},
    }
    got = health_of(SCRIPTS["ComputeJob"], obj, tmp_path)
    assert (got["status"], got["message"]) == ("Degraded", 'Gui\'an "贵安" \\ fail\nline 2')


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
