"""Pytest fixtures for a real Prometheus on 127.0.0.1 (see tests/tools/prometheus.py).

List it in a conftest (`pytest_plugins = ["tests.tools.prometheus_plugin"]` in the root conftest, or
`from tests.tools.prometheus_plugin import *` in a folder's conftest), then:

    def test_scraped(prometheus_factory, ...):
        prom = prometheus_factory([static_job("suanli", ["127.0.0.1:8080"])])
        prom.wait_for_targets_up(["suanli"])
        prom.wait_for_series("suanli_jobs_total")

Servers started through the factory are stopped at the end of the test; `prometheus_binary`
fails (not skips) when no binary can be had, with the message saying what to install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.tools import prometheus as prometheus_tools

__all__ = ["prometheus_binary", "prometheus_factory"]

PrometheusFactory = Callable[..., prometheus_tools.PrometheusServer]


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    try:
        return prometheus_tools.ensure_binary()
    except prometheus_tools.PrometheusUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def prometheus_factory(prometheus_binary: Path, tmp_path: Path) -> Iterator[PrometheusFactory]:
    """`factory(scrape_configs, **kwargs)` starts a server (kwargs: see PrometheusServer.start)."""
    servers: list[prometheus_tools.PrometheusServer] = []

    def factory(scrape_configs: list[dict[str, Any]], **kwargs: Any) -> prometheus_tools.PrometheusServer:
        server = prometheus_tools.PrometheusServer.start(
            tmp_path / f"prometheus-{len(servers)}", scrape_configs, **kwargs
        )
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
