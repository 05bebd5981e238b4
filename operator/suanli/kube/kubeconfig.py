"""Kubeconfig for the commands people run (`suanli explain`, `suanli join`, `kubectl suanli ...`), as kubectl
reads it: `--kubeconfig PATH`, else $KUBECONFIG (several files joined with `:` are merged), else
~/.kube/config; `--context NAME`, else the current context; the namespace: `-n`, else the context's,
else `default`.

The operator itself (`suanli run`) uses transport.api_client (in-cluster first).
"""

from __future__ import annotations

import os
from typing import Any

from suanli.kube import transport


class KubeconfigError(Exception):
    """The kubeconfig or context cannot be used; the message says which and what to do."""


def _path(kubeconfig: str | None) -> str:
    """The file(s) to read, resolved here (the client library reads $KUBECONFIG once, when imported)."""
    return kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _where(kubeconfig: str | None) -> str:
    if kubeconfig:
        return kubeconfig
    if os.environ.get("KUBECONFIG"):
        return f"{os.environ['KUBECONFIG']} (from $KUBECONFIG)"
    return "~/.kube/config"


def _contexts(kubeconfig: str | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    try:
        contexts, current = transport.k8s_config.list_kube_config_contexts(config_file=_path(kubeconfig))
    except Exception as exc:  # missing file, bad YAML, no contexts: the client says which
        hint = "check that file" if kubeconfig else "give one with --kubeconfig PATH or $KUBECONFIG, as for kubectl"
        raise KubeconfigError(f"cannot load kubeconfig {_where(kubeconfig)}: {exc}; {hint}") from None
    return list(contexts or []), current


def context(kubeconfig: str | None, name: str | None) -> dict[str, Any]:
    """The context to use (`name`, else the current one): {"name": ..., "context": {...}}."""
    contexts, current = _contexts(kubeconfig)
    if name is None:
        if not current:
            raise KubeconfigError(
                f"kubeconfig {_where(kubeconfig)} has no current-context; pick one with --context NAME "
                f"(`kubectl config get-contexts` lists them)"
            )
        return current
    for candidate in contexts:
        if candidate.get("name") == name:
            return candidate
    known = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
    raise KubeconfigError(
        f"context {name!r} is not in kubeconfig {_where(kubeconfig)}; its contexts: {known}. "
        f"Pick one with --context NAME (`kubectl config get-contexts` lists them)"
    )


def namespace(kubeconfig: str | None, context_name: str | None, given: str | None) -> str:
    """`given` (-n), else the context's namespace, else default."""
    if given:
        return given
    return (context(kubeconfig, context_name).get("context") or {}).get("namespace") or "default"


def client(kubeconfig: str | None, context_name: str | None) -> Any:
    """An ApiClient for that kubeconfig and context (checked first, so a wrong name is a clear error)."""
    chosen = context(kubeconfig, context_name)
    configuration = transport.k8s.Configuration()
    try:
        transport.k8s_config.load_kube_config(
            config_file=_path(kubeconfig), context=chosen["name"], client_configuration=configuration
        )
    except Exception as exc:
        raise KubeconfigError(
            f"cannot use context {chosen['name']!r} of kubeconfig {_where(kubeconfig)}: {exc}"
        ) from None
    return transport.k8s.ApiClient(configuration)
