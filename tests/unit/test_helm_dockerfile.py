"""The operator image's Dockerfile, checked without a Docker engine: hadolint, and what it must say.

Multi-stage (wheels built in a builder, installed in the final stage), a pinned base, no build
tools or pip in the final stage, a numeric non-root USER matching the chart's runAsUser, `suanli`
as the entrypoint, and a .dockerignore that keeps the build context to the package sources.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.tools import helmkit  # noqa: E402

DOCKERFILE = ROOT / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make ", "python3-dev", "git ", "curl ", "wget ")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_hadolint_passes() -> None:
    proc = subprocess.run(
        [helmkit.tool("hadolint"), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"hadolint:\n{proc.stdout}{proc.stderr}"


def test_base_image_is_pinned() -> None:
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1]
        for kw, rest in _instructions()
        if kw == "ARG" and "=" in rest
    }
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), (
        f"pin the base to an exact patch release (and ideally a digest), not {base!r}"
    )
    froms = [rest for kw, rest in _instructions() if kw == "FROM"]
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms), froms


def test_multi_stage_and_final_stage_has_no_build_tools() -> None:
    stages = _stages()
    assert len(stages) >= 2, "build the wheel in a builder stage"
    final = stages[-1]
    final_text = " ".join(rest for _, rest in final)
    assert "pip wheel" in " ".join(rest for _, rest in stages[0])
    assert "--no-index" in final_text, "the final stage installs only the builder's wheels"
    assert "pip uninstall -y pip setuptools wheel" in final_text
    for tool in BUILD_TOOLS:
        assert tool not in final_text + " ", f"build tool {tool.strip()!r} in the final stage"
    assert not any(kw == "COPY" and "operator" in rest for kw, rest in final), "sources stay in the builder"


def test_runs_suanli_as_a_numeric_non_root_user() -> None:
    final = _stages()[-1]
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "the final stage must set USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    last_user_index = max(i for i, (kw, _) in enumerate(final) if kw == "USER")
    assert not any(kw == "RUN" for kw, _ in final[last_user_index:]), "nothing runs as root after USER"
    values = yaml.safe_load((helmkit.CHART / "values.yaml").read_text())
    assert int(uid) == values["podSecurityContext"]["runAsUser"], (
        "image user and chart runAsUser should agree"
    )
    entrypoint = [rest for kw, rest in final if kw == "ENTRYPOINT"]
    assert entrypoint == ['["suanli"]']
    assert [rest for kw, rest in final if kw == "CMD"] == ['["run"]']


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing and allow only what the build needs"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "requirements.lock", "operator"}
    # Every source of every COPY (all words but the last, the destination) must be in the context.
    copied = {
        src.rstrip("/")
        for kw, rest in _instructions()
        if kw == "COPY" and "--from" not in rest
        for src in rest.split()[:-1]
    }
    assert copied <= allowed, copied - allowed
    for path in allowed:
        assert (ROOT / path).exists(), f".dockerignore allows {path}, which does not exist"


@pytest.mark.parametrize("port_key", ["metrics", "health"])
def test_exposed_ports_match_the_chart(port_key: str) -> None:
    exposed = {int(p) for kw, rest in _instructions() if kw == "EXPOSE" for p in rest.split()}
    values = yaml.safe_load((helmkit.CHART / "values.yaml").read_text())
    assert values["ports"][port_key] in exposed
