"""The chaos suite (make chaos): the cluster fixtures of tests/cluster/pytest_plugin.py, as for e2e.

KUBECONFIG set: that cluster is used as is (the API-server restart fault is then replaced, see
tests/chaos/faults.py). Otherwise the local control plane (tests/cluster/up.sh) is reused or started.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:  # `pytest` run without `python -m` does not add the cwd
    sys.path.insert(0, _REPO_ROOT)

from tests.cluster.pytest_plugin import *  # noqa: E402, F403  (fixtures and hooks)
