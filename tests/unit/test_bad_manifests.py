"""Malformed manifests are refused with a message naming the file, the object and the field.

Each file in tests/unit/bad_manifests/ is one broken manifest whose header says what is
expected of it:

    # <what is wrong, for a person>
    # object: ComputeJob bad-duration          (as the error names it; "-" for none)
    # field: spec.runtime.estimatedDuration    (the field path in the error)
    # says: Go-style                           (a fragment of the message: what to do)
    # server: spec.runtime.estimatedDuration   (what the API server's refusal must name,
    #                                           "-" when only Suanli can tell; used by
    #                                           tests/integration/test_crds.py)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import subprocess
import sys

import pytest

from suanli.api import manifests

HERE = pathlib.Path(__file__).parent / "bad_manifests"
REPO = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Case:
    path: pathlib.Path
    what: str
    obj: str
    field: str
    says: str
    server: str

    @property
    def name(self) -> str:
        return self.path.stem


def load_cases(folder: pathlib.Path = HERE) -> list[Case]:
    """Every bad manifest with the expectations of its header."""
    cases = []
    for path in sorted(folder.glob("*.yaml")):
        lines = path.read_text(encoding="utf-8").splitlines()
        header: dict[str, str] = {}
        for line in lines[1:]:
            if not line.startswith("# ") or ":" not in line:
                break
            key, _, value = line[2:].partition(":")
            header[key.strip()] = value.strip()
        missing = {"object", "field", "says", "server"} - set(header)
        assert not missing, f"{path}: header lacks {', '.join(sorted(missing))}"
        cases.append(
            Case(
                path=path,
                what=lines[0].removeprefix("# "),
                obj="" if header["object"] == "-" else header["object"],
                field=header["field"],
                says=header["says"],
                server=header["server"],
            )
        )
    return cases


CASES = load_cases()


def test_the_table_is_broad() -> None:
    assert len(CASES) >= 15
    kinds = {c.obj.split(" ")[0] for c in CASES if c.obj}
    assert kinds == {"ComputeCenter", "ComputeJob"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_parse_names_file_object_and_field(case: Case) -> None:
    source = f"bad_manifests/{case.path.name}"
    with pytest.raises(manifests.InvalidManifests) as err:
        manifests.parse_text(case.path.read_text(encoding="utf-8"), source)
    errors = err.value.errors
    matching = [e for e in errors if e.field == case.field]
    assert matching, f"no error on {case.field}; got {[str(e) for e in errors]}"
    error = matching[0]
    assert error.source == source
    assert error.obj == case.obj
    assert case.says in error.message, f"{error.message!r} does not say {case.says!r}"
    prefix = f"{source}: {case.obj}: {case.field}: " if case.obj else f"{source}: {case.field}: "
    assert str(error).startswith(prefix), str(error)
    assert str(error) in str(err.value)


def test_every_error_of_a_file_is_reported_not_only_the_first() -> None:
    text = "\n---\n".join(
        c.path.read_text(encoding="utf-8") for c in CASES if c.obj and c.field != "apiVersion"
    )
    with pytest.raises(manifests.InvalidManifests) as err:
        manifests.parse_text(text, "all.yaml")
    named = {e.obj for e in err.value.errors}
    assert named >= {c.obj for c in CASES if c.obj and c.field != "apiVersion"}


def _command(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from suanli import cli; sys.exit(cli.main(sys.argv[1:]))",
        *args,
    ]


_ENV = {**os.environ, "PYTHONPATH": str(REPO / "operator")}


@functools.cache
def _plan_every_case() -> dict[str, tuple[int, str]]:
    """`suanli plan -f <file>` for every case, run side by side: name -> (exit code, stderr)."""
    procs = {
        case.name: subprocess.Popen(
            _command("plan", "-f", str(case.path)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=_ENV,
        )
        for case in CASES
    }
    results = {}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        results[name] = (proc.returncode, stderr)
    return results


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_plan_exits_2_with_the_message(case: Case) -> None:
    code, stderr = _plan_every_case()[case.name]
    assert code == 2, f"exit {code}\nstderr: {stderr}"
    assert case.path.name in stderr
    assert case.field in stderr
    assert case.says in stderr
    if case.obj:
        assert case.obj in stderr
