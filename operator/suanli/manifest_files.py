"""Read ComputeCenter and ComputeJob manifests from files and folders (the I/O half of api.manifests)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable
from typing import TextIO

from suanli.api import manifests

SUFFIXES = (".yaml", ".yml", ".json")


def expand(paths: Iterable[str]) -> list[pathlib.Path]:
    """Files named, and the YAML/JSON files directly in folders named (sorted; like `kubectl apply -f DIR`)."""
    out: list[pathlib.Path] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()))
        elif path.exists():
            out.append(path)
        else:
            raise manifests.InvalidManifests(
                [manifests.ManifestError(str(path), "", "", "no such file or folder")]
            )
    unique: dict[pathlib.Path, pathlib.Path] = {}
    for path in out:  # a file named twice (directly and through its folder) is read once
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def load(paths: Iterable[str]) -> manifests.Manifests:
    """Every object of every file; all errors of all files are reported together.

    Two objects with one name would silently shadow each other, so they are refused, naming both files.
    """
    result = manifests.Manifests()
    errors: list[manifests.ManifestError] = []
    seen: dict[tuple[str, str, str], str] = {}
    for path in expand(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(manifests.ManifestError(str(path), "", "", f"cannot read: {exc}"))
            continue
        try:
            parsed = manifests.parse_text(text, str(path))
        except manifests.InvalidManifests as exc:
            errors.extend(exc.errors)
            continue
        for kind, namespace, name in [("ComputeCenter", "", c.name) for c in parsed.centers] + [
            ("ComputeJob", j.namespace, j.name) for j in parsed.jobs
        ]:
            key = (kind, namespace, name)
            shown = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
            if key in seen:
                errors.append(
                    manifests.ManifestError(
                        str(path),
                        shown,
                        "metadata.name",
                        f"is also defined in {seen[key]}; rename one of them",
                    )
                )
            seen.setdefault(key, str(path))
        result.extend(parsed)
    if errors:
        raise manifests.InvalidManifests(errors)
    return result


def print_errors(command: str, exc: manifests.InvalidManifests, what_was_not_done: str, err: TextIO) -> None:
    """The refusal every command prints for bad manifests: a count, then one line per problem."""
    print(f"suanli {command}: {len(exc.errors)} problem(s) in the manifests; {what_was_not_done}:", file=err)
    for error in exc.errors:
        print(f"  {error}", file=err)
