"""One member cluster's API client, built from checked credentials (`credentials.Credentials`).

Nothing is read from the operator's disk and nothing is run: the server's CA goes to the TLS layer as
data; a bearer token as a header. A client certificate and key must reach OpenSSL as files, so they
are written, readable by the operator's user only, into a private temporary directory that `close`
removes (they never leave the process's own temporary space, and are not kept after a disconnect).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any

from kubernetes import client as _k8s

from suanli.kube import client as client_mod
from suanli.members import credentials as credentials_mod

k8s: Any = _k8s


class Connection:
    """The `client.Api` of one member cluster, and what must be cleaned up when it is dropped."""

    def __init__(self, center: str, creds: credentials_mod.Credentials, workers: int, timeout: float,
                 instance: str = ""):
        self.center, self.server = center, creds.server
        self._dir: str | None = None
        configuration = k8s.Configuration()
        configuration.host = creds.server
        configuration.ca_cert_data = creds.ca_pem.decode()
        configuration.verify_ssl = True
        if creds.tls_server_name:
            configuration.tls_server_name = creds.tls_server_name
        if creds.token:
            configuration.api_key = {"BearerToken": creds.token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        else:
            assert creds.cert_pem is not None and creds.key_pem is not None
            self._dir = tempfile.mkdtemp(prefix=f"suanli-member-{center}-")
            configuration.cert_file = self._write("client.crt", creds.cert_pem)
            configuration.key_file = self._write("client.key", creds.key_pem)
        configuration.connection_pool_maxsize = workers * 2 + 4  # writes, binding writes, three watches
        self.api = client_mod.Api(k8s.ApiClient(configuration), workers, instance=instance, timeout=timeout)

    def _write(self, name: str, data: bytes) -> str:
        assert self._dir is not None
        path = os.path.join(self._dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api.close()
        with contextlib.suppress(Exception):
            self.api.client.close()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
