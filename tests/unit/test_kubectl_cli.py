"""`kubectl suanli` (kubectl-suanli): its commands, and the kubeconfig read as kubectl reads it. No cluster:
the live explain, through the real kubectl, is tests/e2e/test_kubectl_plugin.py."""

from __future__ import annotations

import io
import tomllib
from pathlib import Path

import pytest
import yaml

from suanli import cli
from suanli.commands import explain
from suanli.kube import kubeconfig

ROOT = Path(__file__).resolve().parents[2]


def _kubeconfig(path: Path) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [
            {"name": "first", "context": {"cluster": "c", "user": "u"}},
            {"name": "second", "context": {"cluster": "c", "user": "u", "namespace": "team-b"}},
        ],
        "current-context": "first",
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_the_package_installs_the_plugin_executable() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubectl-suanli"] == "suanli.cli:kubectl_main", "kubectl finds plugins as kubectl-<name> on PATH"


def test_help_lists_the_kubectl_commands_only(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.kubectl_main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: kubectl suanli")
    assert all(f"    {c} " in out for c in cli.KUBECTL_COMMANDS)
    assert "    run " not in out and "    simulate " not in out
    with pytest.raises(SystemExit) as exit_info:
        cli.kubectl_main(["run"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'run'" in capsys.readouterr().err


def test_explain_takes_kubectl_flags() -> None:
    args = cli.build_parser(cli.KUBECTL_PROG, cli.KUBECTL_COMMANDS).parse_args(
        ["explain", "train-1", "-n", "team-a", "--context", "prod", "--kubeconfig", "/k"]
    )
    assert (args.target, args.namespace, args.context, args.kubeconfig) == ("train-1", "team-a", "prod", "/k")
    join = cli.build_parser().parse_args(["join", "guian", "--member-kubeconfig", "/m", "--context", "hub"])
    assert (join.context, join.member_context, join.namespace) == ("hub", None, "suanli-system")


def test_namespace_from_flag_then_context_then_default(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "config")
    assert kubeconfig.namespace(path, "second", None) == "team-b"
    assert kubeconfig.namespace(path, None, None) == "default"  # "first" has none
    assert kubeconfig.namespace(path, "second", "team-a") == "team-a"


def test_a_wrong_context_names_the_ones_there(tmp_path: Path) -> None:
    path = _kubeconfig(tmp_path / "config")
    err = io.StringIO()
    assert explain.run("team-a/train-1", path, io.StringIO(), err, context="prod") == 1
    assert err.getvalue() == (
        f"suanli explain: context 'prod' is not in kubeconfig {path}; its contexts: first, second. "
        f"Pick one with --context NAME (`kubectl config get-contexts` lists them)\n"
    )


def test_kubeconfig_from_the_environment_is_named_as_such(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _kubeconfig(tmp_path / "config")
    monkeypatch.setenv("KUBECONFIG", path)
    with pytest.raises(kubeconfig.KubeconfigError, match=rf"not in kubeconfig {path} \(from \$KUBECONFIG\)"):
        kubeconfig.context(None, "prod")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(kubeconfig.KubeconfigError, match=r"cannot load kubeconfig .*missing .*--kubeconfig PATH"):
        kubeconfig.context(None, None)


@pytest.mark.parametrize(
    ("target", "namespace", "says"),
    [
        ("team-a/train-1", "team-b", "team-a/train-1 names namespace team-a, but -n says team-b"),
        ("/train-1", None, "give the job as NAMESPACE/NAME, or NAME with -n NAMESPACE"),
        ("team-a/", None, "give the job as NAMESPACE/NAME, or NAME with -n NAMESPACE"),
    ],
)
def test_explain_refuses_an_ambiguous_target(target: str, namespace: str | None, says: str) -> None:
    err = io.StringIO()
    assert explain.run(target, "/nonexistent", io.StringIO(), err, namespace=namespace) == 2
    assert says in err.getvalue()
