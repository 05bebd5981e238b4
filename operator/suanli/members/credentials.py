"""What a member cluster's kubeconfig may hold, checked before anything connects. Pure.

The hub reads a member's kubeconfig from a Secret that a platform team (or `suanli join`)
wrote. A kubeconfig can do more than name a server and a credential: an `exec` plugin or an
`auth-provider` runs a program on the operator's host, and a path (`tokenFile`,
`client-certificate`, `client-key`, `certificate-authority`) reads a file from its disk. None of
that is acceptable for a credential that arrives through the API, so only two kinds of
credential are accepted — a bearer `token`, or a client certificate with its key as inline
data — and the server's CA must be inline (`certificate-authority-data`) too. Anything else is
refused with the field that was refused and what to write instead; nothing is run and nothing
is read from disk.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping
from typing import Any

import yaml

# Fields that would run a program or read a file, and what to use instead.
REFUSED_USER_FIELDS = {
    "exec": "an exec plugin would run a program on the operator's host; use a ServiceAccount token (`token`)",
    "auth-provider": "an auth provider would run a plugin on the operator's host; use a ServiceAccount token (`token`)",
    "tokenFile": "a path would be read from the operator's disk; put the token itself in `token`",
    "client-certificate": "a path would be read from the operator's disk; use `client-certificate-data`",
    "client-key": "a path would be read from the operator's disk; use `client-key-data`",
    "username": "basic authentication is not accepted; use a ServiceAccount token (`token`)",
    "password": "basic authentication is not accepted; use a ServiceAccount token (`token`)",
    "as": "impersonation is not accepted; give the credential itself the rights it needs",
    "as-groups": "impersonation is not accepted; give the credential itself the rights it needs",
    "as-uid": "impersonation is not accepted; give the credential itself the rights it needs",
    "as-user-extra": "impersonation is not accepted; give the credential itself the rights it needs",
}
REFUSED_CLUSTER_FIELDS = {
    "certificate-authority": "a path would be read from the operator's disk; use `certificate-authority-data`",
    "insecure-skip-tls-verify": "the member's server certificate must be verified; give `certificate-authority-data`",
    "proxy-url": "proxies are not supported for member clusters; reach the server directly",
}


class Refused(ValueError):
    """The kubeconfig cannot be used; the message names the field and what to do."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    """How to reach one member cluster: its server, the CA that signs its certificate, and one
    credential (a bearer token, or a client certificate and key, PEM)."""

    server: str
    ca_pem: bytes
    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    tls_server_name: str | None = None

    def __repr__(self) -> str:  # never a secret in a log line
        kind = "token" if self.token else "client certificate"
        return f"Credentials(server={self.server!r}, {kind})"

    __str__ = __repr__


def parse(text: str | bytes) -> Credentials:
    """The credentials of `text` (a kubeconfig) for its current context, or `Refused`."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise Refused(f"not a kubeconfig: YAML error {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, Mapping):
        raise Refused("not a kubeconfig: expected a mapping with clusters, users and contexts")
    context_name, context = _context(doc)
    cluster = _named(doc, "clusters", "cluster", context.get("cluster"), f"contexts[{context_name}].context.cluster")
    user = _named(doc, "users", "user", context.get("user"), f"contexts[{context_name}].context.user")
    return _credentials(cluster, user)


def _context(doc: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    contexts = _entries(doc, "contexts", "context")
    current = doc.get("current-context")
    if current:
        if current not in contexts:
            raise Refused(f"current-context {current!r} names no entry of contexts")
        return current, contexts[current]
    if len(contexts) != 1:
        raise Refused(f"no current-context and {len(contexts)} contexts: set current-context")
    return next(iter(contexts.items()))


def _entries(doc: Mapping[str, Any], section: str, inner: str) -> dict[str, Mapping[str, Any]]:
    out: dict[str, Mapping[str, Any]] = {}
    for i, entry in enumerate(doc.get(section) or []):
        if not isinstance(entry, Mapping) or not isinstance(entry.get(inner), Mapping):
            raise Refused(f"{section}[{i}] has no {inner} mapping")
        out[str(entry.get("name", ""))] = entry[inner]
    return out


def _named(doc: Mapping[str, Any], section: str, inner: str, name: Any, where: str) -> tuple[str, Mapping[str, Any]]:
    entries = _entries(doc, section, inner)
    if not name or name not in entries:
        raise Refused(f"{where} names {name!r}, which is not in {section}")
    return f"{section}[{name}].{inner}", entries[name]


def _credentials(cluster: tuple[str, Mapping[str, Any]], user: tuple[str, Mapping[str, Any]]) -> Credentials:
    cluster_at, cluster_doc = cluster
    user_at, user_doc = user
    for field, why in REFUSED_CLUSTER_FIELDS.items():
        if cluster_doc.get(field) not in (None, False, ""):
            raise Refused(f"{cluster_at}.{field} is not accepted: {why}")
    for field, why in REFUSED_USER_FIELDS.items():
        if user_doc.get(field) not in (None, "", [], {}):
            raise Refused(f"{user_at}.{field} is not accepted: {why}")
    server = str(cluster_doc.get("server") or "")
    if not server.startswith("https://"):
        raise Refused(f"{cluster_at}.server must be an https:// URL (got {server!r})")
    ca = _pem(cluster_doc, "certificate-authority-data", cluster_at)
    if ca is None:
        raise Refused(f"{cluster_at}.certificate-authority-data is required: the hub verifies the member's server")
    token = user_doc.get("token")
    cert = _pem(user_doc, "client-certificate-data", user_at)
    key = _pem(user_doc, "client-key-data", user_at)
    if token:
        if cert is not None or key is not None:
            raise Refused(f"{user_at} has both a token and a client certificate: keep one")
        return Credentials(server, ca, token=str(token).strip(), tls_server_name=cluster_doc.get("tls-server-name"))
    if cert is not None and key is not None:
        return Credentials(server, ca, cert_pem=cert, key_pem=key, tls_server_name=cluster_doc.get("tls-server-name"))
    if cert is not None or key is not None:
        missing = "client-key-data" if key is None else "client-certificate-data"
        raise Refused(f"{user_at}.{missing} is missing: a client certificate needs its key, both inline")
    raise Refused(f"{user_at} has no credential: give a `token`, or `client-certificate-data` and `client-key-data`")


def _pem(doc: Mapping[str, Any], field: str, where: str) -> bytes | None:
    value = doc.get(field)
    if value in (None, ""):
        return None
    try:
        data = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise Refused(f"{where}.{field} is not base64") from None
    if b"-----BEGIN " not in data:
        raise Refused(f"{where}.{field} does not decode to PEM")
    return data
