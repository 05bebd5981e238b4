"""Read ComputeCenter and ComputeJob manifests from files and folders (the I/O half of api.manifests)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable

from suanli.api import manifests

SUFFIXES = (".yaml", ".yml", ".json")


def expand(paths: Iterable[str]) -> list[pathlib.Path]:
    """Files named, and the YAML/JSON files directly in folders named (sorted; like `kubectl apply -f DIR`)."""
    out: list[pathlib.Path] = []
    for raw in paths:
        path = pathlib.Path(raw)
        if path.is_dir():
            out.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in SUFFIXES
                    and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.exists():
            out.append(path)
        else:
            raise manifests.InvalidManifests(
                [manifests.ManifestError(str(path), "", "", "no such file or folder")]
            )
    return out


def load(paths: Iterable[str]) -> manifests.Manifests:
    """Every object of every file; all errors of all files are reported together."""
    result = manifests.Manifests()
    errors: list[manifests.ManifestError] = []
    for path in expand(paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            errors.append(manifests.ManifestError(str(path), "", "", f"cannot read: {exc}"))
            continue
        try:
            result.extend(manifests.parse_text(text, str(path)))
        except manifests.InvalidManifests as exc:
            errors.extend(exc.errors)
    if errors:
        raise manifests.InvalidManifests(errors)
    return result
