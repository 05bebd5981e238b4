"""`suanli join`: what it would create (--dry-run), and that the kubeconfig it writes is one the hub
accepts. The real join, against a hub and member local clusters, is in tests/e2e/test_members.py."""

from __future__ import annotations

import base64
import io

import yaml

from suanli import cli
from suanli.commands import join
from suanli.members import access, credentials

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_dry_run_prints_the_member_objects_the_hub_secret_and_the_center_patch() -> None:
    args = cli.build_parser().parse_args(["join", "guian", "--member-kubeconfig", "/nonexistent", "--dry-run",
                                          "--namespace", "ops"])
    out = io.StringIO()
    assert join.run(args, out) == 0
    docs = [d for d in yaml.safe_load_all(out.getvalue()) if d]
    kinds = [(d.get("kind"), (d.get("metadata") or {}).get("name")) for d in docs]
    assert kinds == [("Namespace", "suanli-member"), ("ServiceAccount", "suanli-hub"), ("ClusterRole", "suanli-member"),
                     ("ClusterRoleBinding", "suanli-member"), ("Secret", "suanli-hub-token"),
                     ("Secret", "guian-kubeconfig"), (None, None)]
    assert docs[2]["rules"] == access.rules(True)
    assert docs[5]["metadata"]["namespace"] == "ops"
    assert docs[6] == access.center_patch("guian", "ops")
    no_ns = cli.build_parser().parse_args(["join", "guian", "--member-kubeconfig", "/x", "--dry-run", "--no-namespaces"])
    out = io.StringIO()
    join.run(no_ns, out)
    role = next(d for d in yaml.safe_load_all(out.getvalue()) if d and d.get("kind") == "ClusterRole")
    assert role["rules"] == access.rules(False) and all("namespaces" not in r["resources"] for r in role["rules"])


def test_the_kubeconfig_join_writes_is_accepted_by_the_hub() -> None:
    text = access.kubeconfig("guian", "https://10.0.0.1:6443", PEM, "tok.en")
    creds = credentials.parse(text)
    assert (creds.server, creds.ca_pem, creds.token) == ("https://10.0.0.1:6443", PEM, "tok.en")
    secret = access.hub_secret("guian", "suanli-system", text)
    assert secret["metadata"]["name"] == "guian-kubeconfig" and secret["stringData"]["kubeconfig"] == text
    assert base64.b64decode(yaml.safe_load(text)["clusters"][0]["cluster"]["certificate-authority-data"]) == PEM


def test_an_unreadable_member_kubeconfig_stops_join_before_anything_is_written(capsys) -> None:  # type: ignore[no-untyped-def]
    args = cli.build_parser().parse_args(["join", "guian", "--member-kubeconfig", "/nonexistent", "--token-secret", "x"])
    assert join.run(args) == 1
    assert "cannot load kubeconfig /nonexistent" in capsys.readouterr().err
