"""`suanli join CENTER --member-kubeconfig PATH`: make a cluster a member of the hub.

In the member (with the platform team's own credentials, from PATH): the namespace `suanli-member`,
the ServiceAccount the hub acts as, least-privilege RBAC (`members.access.RULES`) and a token for it.
On the hub (`--kubeconfig` and `--context`, default as kubectl's): the Secret holding a kubeconfig with that token
and the member's CA inline, in the operator's namespace, and `spec.cluster.kubeconfigSecretRef` of
the ComputeCenter pointing at it. `--dry-run -o yaml` prints every object instead (the token and the
center patch are placeholders then: nothing is asked of either API server).

Everything is create-or-update, so joining again (say, after deleting the token Secret to rotate
it) converges. The hub notices a changed Secret within `members.probe_seconds` and reconnects.
"""

from __future__ import annotations

import base64
import sys
import time
from typing import Any, TextIO

import yaml

from suanli.members import access

TOKEN_WAIT_SECONDS = 60.0


class JoinError(Exception):
    """What went wrong, for the person running the command."""


def run(args: Any, out: TextIO = sys.stdout) -> int:
    try:
        if args.dry_run:
            _print_plan(args, out)
            return 0
        _join(args, out)
        return 0
    except JoinError as exc:
        print(f"suanli join: {exc}", file=sys.stderr)
        return 1


def _print_plan(args: Any, out: TextIO) -> None:
    placeholder = access.kubeconfig(args.center, args.member_server or "https://MEMBER-API-SERVER:6443",
                                    b"-----BEGIN CERTIFICATE-----\nTHE MEMBER'S CA\n-----END CERTIFICATE-----\n",
                                    "THE-TOKEN-OF-suanli-member/suanli-hub")
    docs = [
        *access.member_objects(not args.no_namespaces),
        access.hub_secret(args.center, args.namespace, placeholder),
    ]
    out.write("# In the member cluster:\n")
    out.write(yaml.safe_dump_all(docs[:-1], sort_keys=False))
    out.write("---\n# On the hub (the token and CA are filled in by a real join):\n")
    out.write(yaml.safe_dump(docs[-1], sort_keys=False))
    out.write(f"---\n# And ComputeCenter {args.center} on the hub is patched with:\n")
    out.write(yaml.safe_dump(access.center_patch(args.center, args.namespace), sort_keys=False))


def _client(path: str | None, context: str | None = None) -> Any:
    from suanli.kube import kubeconfig

    try:
        return kubeconfig.client(path, context)
    except kubeconfig.KubeconfigError as exc:
        raise JoinError(str(exc)) from None


def _apply(api: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """Create `doc`, or replace it when it exists (server-side apply, field manager suanli-join)."""
    from kubernetes import dynamic

    dynamic_mod: Any = dynamic
    dyn = dynamic_mod.DynamicClient(api)
    resource = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    meta = doc["metadata"]
    kwargs = {"namespace": meta["namespace"]} if "namespace" in meta else {}
    result = resource.server_side_apply(body=doc, name=meta["name"], field_manager="suanli-join", force_conflicts=True,
                                        **kwargs)
    out: dict[str, Any] = result.to_dict()
    return out


def _join(args: Any, out: TextIO) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    member = _client(args.member_kubeconfig, args.member_context)
    hub = _client(args.kubeconfig, args.context)
    custom = client.CustomObjectsApi(hub)
    try:
        custom.get_cluster_custom_object("suanli.io", "v1alpha1", "computecenters", args.center)
    except ApiException as exc:
        if exc.status == 404:
            raise JoinError(f"ComputeCenter {args.center} does not exist on the hub; create it first "
                            f"(kubectl apply -f your-center.yaml), then join") from None
        raise JoinError(f"cannot read ComputeCenter {args.center} on the hub: HTTP {exc.status} {exc.reason}") from None

    token_ns, token_name = access.NAMESPACE, access.TOKEN_SECRET
    if args.token_secret:  # made by the chart's member mode: leave the member side to Helm / Argo CD
        token_ns, _, token_name = args.token_secret.partition("/")
        if not token_ns or not token_name:
            raise JoinError(f"--token-secret {args.token_secret!r}: give NAMESPACE/NAME") from None
    else:
        try:
            for doc in access.member_objects(not args.no_namespaces):
                _apply(member, doc)
                where = f"{doc['metadata']['namespace']}/" if doc["metadata"].get("namespace") else ""
                out.write(f"member: {doc['kind']} {where}{doc['metadata']['name']} applied\n")
        except ApiException as exc:
            raise JoinError(f"cannot create the hub's identity in the member: HTTP {exc.status} {exc.reason} "
                            f"(the member kubeconfig needs rights to create namespaces, service accounts and RBAC)") from None
    token, ca = _token(client.CoreV1Api(member), token_ns, token_name)
    server = args.member_server or member.configuration.host
    text = access.kubeconfig(args.center, server, ca, token)
    secret = access.hub_secret(args.center, args.namespace, text)
    try:
        _apply(hub, secret)
        custom.patch_cluster_custom_object("suanli.io", "v1alpha1", "computecenters", args.center,
                                           access.center_patch(args.center, args.namespace))
    except ApiException as exc:
        raise JoinError(f"cannot write the kubeconfig Secret or patch ComputeCenter {args.center} on the hub: "
                        f"HTTP {exc.status} {exc.reason}") from None
    out.write(f"hub: Secret {args.namespace}/{secret['metadata']['name']} written; ComputeCenter {args.center} "
              f"now points at it (the operator connects within members.probe_seconds)\n")
    out.write(f"joined: {args.center} -> {server}\n")


def _token(core: Any, namespace: str, name: str) -> tuple[str, bytes]:
    """The token and CA the member's token controller put in the token Secret (bounded wait)."""
    from kubernetes.client.exceptions import ApiException

    deadline = time.monotonic() + TOKEN_WAIT_SECONDS
    while True:
        try:
            secret = core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            raise JoinError(f"cannot read the token Secret {namespace}/{name} in the member: HTTP {exc.status} "
                            f"{exc.reason}") from None
        data = secret.data or {}
        if data.get("token") and data.get("ca.crt"):
            return base64.b64decode(data["token"]).decode(), base64.b64decode(data["ca.crt"])
        if time.monotonic() >= deadline:
            raise JoinError(
                f"the member's token controller did not fill Secret {namespace}/{name} within "
                f"{TOKEN_WAIT_SECONDS:g}s; is kube-controller-manager running with --service-account-private-key-file "
                f"and --root-ca-file?")
        time.sleep(0.5)  # polling the API server for the controller's write, bounded by the deadline above
