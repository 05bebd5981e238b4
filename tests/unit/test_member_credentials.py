"""A member's kubeconfig: only inline tokens or client certificates; nothing run, nothing read."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest
import yaml

from suanli.members import credentials

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(user: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Config", "current-context": "guian",
        "clusters": [{"name": "guian", "cluster": cluster if cluster is not None else
                      {"server": "https://127.0.0.1:17443", "certificate-authority-data": b64(PEM)}}],
        "users": [{"name": "suanli", "user": user if user is not None else {"token": "abc.def"}}],
        "contexts": [{"name": "guian", "context": {"cluster": "guian", "user": "suanli"}}],
    }


def test_a_token_kubeconfig_is_accepted_and_never_printed() -> None:
    creds = credentials.parse(yaml.safe_dump(kubeconfig()))
    assert (creds.server, creds.ca_pem, creds.token) == ("https://127.0.0.1:17443", PEM, "abc.def")
    assert "abc.def" not in repr(creds) and "abc.def" not in str(creds)


def test_a_client_certificate_kubeconfig_is_accepted() -> None:
    creds = credentials.parse(yaml.safe_dump(kubeconfig({"client-certificate-data": b64(PEM), "client-key-data": b64(KEY)})))
    assert (creds.cert_pem, creds.key_pem, creds.token) == (PEM, KEY, None)


@pytest.mark.parametrize(
    ("user", "cluster", "words"),
    [
        ({"exec": {"command": "touch", "args": ["/tmp/x"], "apiVersion": "client.authentication.k8s.io/v1"}}, None,
         "users[suanli].user.exec is not accepted: an exec plugin would run a program"),
        ({"auth-provider": {"name": "oidc"}}, None, "users[suanli].user.auth-provider is not accepted"),
        ({"tokenFile": "/var/run/token"}, None, "users[suanli].user.tokenFile is not accepted: a path would be read"),
        ({"client-certificate": "/c.pem", "client-key-data": b64(KEY)}, None, "users[suanli].user.client-certificate is"),
        ({"client-certificate-data": b64(PEM), "client-key": "/k.pem"}, None, "users[suanli].user.client-key is not"),
        ({"username": "admin", "password": "x"}, None, "users[suanli].user.username is not accepted: basic"),
        ({"token": "t", "as": "system:admin"}, None, "users[suanli].user.as is not accepted: impersonation"),
        (None, {"server": "https://h:1", "certificate-authority": "/ca.pem"}, "clusters[guian].cluster.certificate-authority is"),
        (None, {"server": "https://h:1", "insecure-skip-tls-verify": True}, "insecure-skip-tls-verify is not accepted"),
        (None, {"server": "http://h:1", "certificate-authority-data": b64(PEM)}, "server must be an https:// URL"),
        (None, {"server": "https://h:1"}, "certificate-authority-data is required"),
        (None, {"server": "https://h:1", "certificate-authority-data": "not base64!"}, "is not base64"),
        (None, {"server": "https://h:1", "certificate-authority-data": b64(b"hello")}, "does not decode to PEM"),
        ({}, None, "users[suanli].user has no credential"),
        ({"client-certificate-data": b64(PEM)}, None, "client-key-data is missing"),
        ({"token": "t", "client-certificate-data": b64(PEM), "client-key-data": b64(KEY)}, None, "both a token and"),
    ],
)
def test_what_would_run_a_program_read_a_file_or_skip_verification_is_refused_naming_the_field(
    user: dict[str, Any] | None, cluster: dict[str, Any] | None, words: str
) -> None:
    with pytest.raises(credentials.Refused) as caught:
        credentials.parse(yaml.safe_dump(kubeconfig(user, cluster)))
    assert words in str(caught.value)


def test_the_current_context_picks_the_cluster_and_user() -> None:
    doc = kubeconfig()
    other = copy.deepcopy(doc)
    doc["clusters"].append({"name": "evil", "cluster": {"server": "https://h:2", "certificate-authority": "/x"}})
    doc["users"].append({"name": "evil", "user": {"exec": {"command": "rm"}}})
    doc["contexts"].append({"name": "evil", "context": {"cluster": "evil", "user": "evil"}})
    assert credentials.parse(yaml.safe_dump(doc)).server == "https://127.0.0.1:17443"
    doc["current-context"] = "evil"
    with pytest.raises(credentials.Refused, match="certificate-authority is not accepted"):
        credentials.parse(yaml.safe_dump(doc))
    del other["current-context"]
    assert credentials.parse(yaml.safe_dump(other)).token == "abc.def"  # the only context


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a: [", "not a kubeconfig: YAML error"),
        ("- 1", "not a kubeconfig: expected a mapping"),
        (yaml.safe_dump({**kubeconfig(), "current-context": "nope"}), "current-context 'nope' names no entry"),
        (yaml.safe_dump({**kubeconfig(), "contexts": [{"name": "guian", "context": {"cluster": "x", "user": "suanli"}}]}),
         "contexts[guian].context.cluster names 'x', which is not in clusters"),
        (yaml.safe_dump({**kubeconfig(), "users": [{"name": "suanli"}]}), "users[0] has no user mapping"),
    ],
)
def test_a_malformed_kubeconfig_says_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(credentials.Refused) as caught:
        credentials.parse(text)
    assert words in str(caught.value)
