"""Unit tests are pure: any attempt to reach an API server or the network fails loudly."""

from __future__ import annotations

import socket

import pytest


class _NoNetwork(socket.socket):
    def connect(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"unit tests must not reach the network (connect {args!r} was called)")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "socket", _NoNetwork)
    monkeypatch.setattr(socket, "create_connection", _refuse)

    try:
        import kubernetes.client

        monkeypatch.setattr(kubernetes.client.ApiClient, "call_api", _refuse)
    except ImportError:  # pragma: no cover - kubernetes is a hard dependency
        pass


def _refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
    raise AssertionError("unit tests must not call the Kubernetes API or open connections")
