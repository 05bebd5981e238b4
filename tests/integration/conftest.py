"""Fixtures for tests against a real API server: see tests/cluster/pytest_plugin.py.

KUBECONFIG set: that cluster is used as is. Otherwise the local control plane
(tests/cluster/up.sh) is reused or started. Mark such tests ``@pytest.mark.cluster``.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:  # `pytest` run without `python -m` does not add the cwd
    sys.path.insert(0, _REPO_ROOT)

from tests.cluster.pytest_plugin import *  # noqa: E402, F403  (fixtures and hooks)
