"""Turn manifest documents into API objects, with errors that name source, object and field.

Pure: takes text and a source name; reading files is the caller's business.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pydantic
import yaml

from suanli import api
from suanli.api import objects

Object = objects.ComputeCenter | objects.ComputeJob | objects.ComputeQueue
KINDS: dict[str, type[Object]] = {
    "ComputeCenter": objects.ComputeCenter, "ComputeJob": objects.ComputeJob, "ComputeQueue": objects.ComputeQueue,
}


@dataclasses.dataclass(frozen=True)
class ManifestError:
    """One problem in one document: where, which object, which field, what to do."""

    source: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.obj}" if self.obj else self.source
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InvalidManifests(ValueError):
    """Raised with every problem found, not only the first."""

    def __init__(self, errors: list[ManifestError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclasses.dataclass
class Manifests:
    centers: list[objects.ComputeCenter] = dataclasses.field(default_factory=list)
    jobs: list[objects.ComputeJob] = dataclasses.field(default_factory=list)
    queues: list[objects.ComputeQueue] = dataclasses.field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)  # v1 Namespaces: their labels

    def extend(self, other: Manifests) -> None:
        self.centers.extend(other.centers)
        self.jobs.extend(other.jobs)
        self.queues.extend(other.queues)
        self.namespaces.update(other.namespaces)


def field_path(loc: Iterable[int | str]) -> str:
    """("spec", "pools", 0, "name") -> "spec.pools[0].name"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-after", "function-before", "function-wrap")) or part == "[key]":
            continue  # validator wrappers, and the marker of an invalid map key (the key is named)
        else:
            out += f".{part}" if out else str(part)
    return out


def _describe(error: Any) -> str:
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return "unknown field; check the spelling against `kubectl explain` or crds/"
    if error.get("type") == "missing":
        return "required field is missing"
    value = error.get("input")
    if error.get("type") not in {"value_error", "model_type", "dict_type", "list_type"} and not isinstance(
        value, dict | list
    ):
        message += f" (got {value!r})"
    return message


def _object_name(doc: dict[str, Any]) -> str:
    kind = doc.get("kind", "object")
    raw_meta = doc.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    name = meta.get("name", "<no name>")
    namespace = meta.get("namespace")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def parse_object(doc: Any, source: str) -> Object | None:
    """One document to an object. None for kinds Suanli does not read (kept for kubectl)."""
    if not isinstance(doc, dict):
        raise InvalidManifests([ManifestError(source, "", "", "document is not a mapping (a Kubernetes object)")])
    kind = doc.get("kind")
    if kind not in KINDS:
        return None
    name = _object_name(doc)
    if doc.get("apiVersion") != api.API_VERSION:
        raise InvalidManifests(
            [ManifestError(source, name, "apiVersion", f"must be {api.API_VERSION} (got {doc.get('apiVersion')!r})")]
        )
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict) or not meta.get("name"):
        raise InvalidManifests([ManifestError(source, name, "metadata.name", "every object needs a name")])
    model: type[Object] = KINDS[kind]
    try:
        return model.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise InvalidManifests(
            [ManifestError(source, name, field_path(e["loc"]), _describe(e)) for e in exc.errors()]
        ) from None


def parse_text(text: str, source: str) -> Manifests:
    """All ComputeCenter, ComputeJob and ComputeQueue documents of a (multi-document) YAML text."""
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise InvalidManifests([ManifestError(source, "", where, f"not valid YAML: {exc}")]) from None
    out = Manifests()
    errors: list[ManifestError] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            items = doc["items"]
        else:
            items = [doc]
        for item in items:
            if isinstance(item, dict) and item.get("kind") == "Namespace" and item.get("apiVersion") == "v1":
                meta = item.get("metadata") or {}
                if isinstance(meta, dict) and meta.get("name"):
                    out.namespaces[str(meta["name"])] = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
                continue
            try:
                obj = parse_object(item, source)
            except InvalidManifests as exc:
                errors.extend(exc.errors)
                continue
            if isinstance(obj, objects.ComputeCenter):
                out.centers.append(obj)
            elif isinstance(obj, objects.ComputeJob):
                out.jobs.append(obj)
            elif isinstance(obj, objects.ComputeQueue):
                out.queues.append(obj)
    if errors:
        raise InvalidManifests(errors)
    return out
