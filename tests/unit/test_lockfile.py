"""requirements.lock agrees with pyproject.toml: what `make venv` and the image install is what
pyproject.toml asks for.

Every dependency declared in pyproject.toml (runtime, the `dev` extra, the `build` group and
[build-system] requires) is pinned in the lock with hashes, in a version its specifier accepts, on
every Python the lock covers; and the packages the lock records as direct ("via suanli
(pyproject.toml...)") are exactly the declared ones. A floor raised, a dependency added or one
dropped without `make lock` fails here, with the command to run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
FIX = "run `make lock` and commit requirements.lock"


@dataclass(frozen=True)
class Pin:
    """One requirement line of the lock: a version, the marker it applies under, its hashes."""

    version: str
    marker: str
    hashes: int


def pins(text: str) -> dict[str, list[Pin]]:
    """Canonical name -> its pins (a universal lock may pin one package per Python version)."""
    found: dict[str, list[Pin]] = {}
    entries: list[tuple[str, Pin]] = []
    for line in text.splitlines():
        stripped = line.strip().rstrip("\\").strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("--hash="):
            name, pin = entries[-1]
            entries[-1] = (name, Pin(pin.version, pin.marker, pin.hashes + 1))
            continue
        if line[0].isspace() or stripped.startswith("-"):
            continue  # an option line (--index-url ...), not a requirement
        req = Requirement(stripped)
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements.lock: {stripped!r} is not an exact pin"
        entries.append((canonicalize_name(req.name), Pin(spec.version, str(req.marker or ""), 0)))
    for name, pin in entries:
        found.setdefault(name, []).append(pin)
    return found


def direct_in_lock(text: str) -> set[str]:
    """Packages whose "# via" annotation names this project: what the lock was resolved for."""
    names: set[str] = set()
    current = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith(("#", "-")):
            current = canonicalize_name(Requirement(line.rstrip("\\").strip()).name)
        elif "suanli (pyproject.toml" in line:
            names.add(current)
    return names


def declared(pyproject: dict[str, Any]) -> dict[str, list[str]]:
    """Where each requirement comes from -> the requirement strings."""
    project = pyproject["project"]
    return {
        "[project] dependencies": list(project.get("dependencies", [])),
        **{f"[project.optional-dependencies] {extra}": list(reqs)
           for extra, reqs in project.get("optional-dependencies", {}).items()},
        **{f"[dependency-groups] {group}": list(reqs) for group, reqs in pyproject.get("dependency-groups", {}).items()},
        "[build-system] requires": list(pyproject.get("build-system", {}).get("requires", [])),
    }


def unmet(pyproject: dict[str, Any], locked: dict[str, list[Pin]]) -> list[str]:
    """Each declared requirement the lock does not satisfy, said with where and what was found."""
    problems = []
    for where, reqs in declared(pyproject).items():
        for raw in reqs:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(req.name)
            if name not in locked:
                problems.append(f"{where}: {raw!r} is not in requirements.lock")
                continue
            for pin in locked[name]:
                if not req.specifier.contains(pin.version, prereleases=True):
                    when = f" ({pin.marker})" if pin.marker else ""
                    problems.append(f"{where}: {raw!r} but requirements.lock pins {name}=={pin.version}{when}")
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def lock_text() -> str:
    assert LOCK.exists(), f"requirements.lock is missing: {FIX}"
    return LOCK.read_text()


def test_every_declared_dependency_is_pinned_within_its_specifier(
    pyproject: dict[str, Any], lock_text: str
) -> None:
    problems = unmet(pyproject, pins(lock_text))
    assert not problems, "\n".join([*problems, FIX])


def test_the_runtime_dependencies_are_checked(pyproject: dict[str, Any], lock_text: str) -> None:
    runtime = {canonicalize_name(Requirement(r).name) for r in pyproject["project"]["dependencies"]}
    assert {"kubernetes", "kopf", "pydantic", "numpy"} <= runtime
    assert runtime <= set(pins(lock_text))


def test_the_lock_was_resolved_for_exactly_the_declared_dependencies(
    pyproject: dict[str, Any], lock_text: str
) -> None:
    names = {canonicalize_name(Requirement(r).name) for reqs in declared(pyproject).values() for r in reqs}
    recorded = direct_in_lock(lock_text)
    assert recorded == names, (
        f"declared but not resolved: {sorted(names - recorded)}; "
        f"resolved but no longer declared: {sorted(recorded - names)}; {FIX}"
    )


def test_every_pin_has_a_hash(lock_text: str) -> None:
    bare = [f"{name}=={pin.version}" for name, found in pins(lock_text).items() for pin in found if not pin.hashes]
    assert not bare, f"pins without --hash (pip --require-hashes refuses them): {bare}; {FIX}"


def test_a_raised_floor_is_caught(pyproject: dict[str, Any], lock_text: str) -> None:
    locked = pins(lock_text)
    (kopf,) = locked["kopf"]
    raised = {**pyproject, "project": {**pyproject["project"], "dependencies": [f"kopf>{kopf.version}"]}}
    assert unmet(raised, locked) == [
        f"[project] dependencies: 'kopf>{kopf.version}' but requirements.lock pins kopf=={kopf.version}"
    ]
    added = {**pyproject, "project": {**pyproject["project"], "dependencies": ["not-a-suanli-dependency>=1"]}}
    assert unmet(added, locked) == [
        "[project] dependencies: 'not-a-suanli-dependency>=1' is not in requirements.lock"
    ]
