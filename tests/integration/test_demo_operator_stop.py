"""The operator `make demo` leaves running is stopped by `make demo-down` and with its hub.

`demo.py --stop` (what `make demo-down` runs first) and the hub's `down.sh` (what `make
cluster-down` and `make demo-down` run) both stop the process named by
``.cluster/pids/suanli-operator.pid`` when it is a ``suanli run``, and only then: a stale pid file
naming another process leaves that process alone.

A stand-in plays the operator here: a script called ``suanli``, started as ``suanli run``, that
sleeps. The real operator needs a live API server and is stopped the same way in
tests/e2e/test_demo.py; what these tests pin is which process the scripts signal.
"""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cluster.pytest_plugin import CLUSTER_SCRIPTS, REPO_ROOT, cluster_script_env

DEMO = REPO_ROOT / "tests" / "cluster" / "demo.py"
STAND_IN = (
    "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "print('ready', flush=True)\ntime.sleep(120)\n"
)
READY_TIMEOUT_S = 30


def _state(root: Path) -> Path:
    """What up.sh leaves in the default cluster's state dir (no control plane processes)."""
    for sub in ("pki", "logs", "pids", "bin", "etcd"):
        (root / sub).mkdir(parents=True)
    for file in (".suanli-cluster", "kubeconfig", "cluster.env"):
        (root / file).write_text("")
    return root


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _stand_in(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    script = tmp_path / "bin" / "suanli"
    script.parent.mkdir(exist_ok=True)
    script.write_text(STAND_IN)
    proc = subprocess.Popen([sys.executable, str(script), "run", "--namespace", "suanli-system"], stdout=subprocess.PIPE)
    processes.append(proc)
    # Until it says so, it may not run the script yet (its command line is not `suanli run`) or not
    # handle SIGTERM yet: stopping it then would test the race, not the scripts.
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
    assert ready and proc.stdout.readline() == b"ready\n", f"the stand-in did not start within {READY_TIMEOUT_S}s"
    return proc


def _bystander(processes: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    processes.append(proc)
    return proc


def _name_in_pid_file(root: Path, proc: subprocess.Popen[bytes]) -> None:
    """What tests/cluster/demo.py writes for the operator it leaves running."""
    (root / "pids" / "suanli-operator.pid").write_text(f"{proc.pid}\n")


def _env(root: Path) -> dict[str, str]:
    return {**cluster_script_env(None), "SUANLI_CLUSTER_DIR": str(root)}


def _run(args: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO_ROOT, env=_env(root), capture_output=True, text=True, timeout=60, check=False
    )


def test_demo_stop_ends_the_operator_the_demo_left(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    root = _state(tmp_path / "cluster")
    operator = _stand_in(tmp_path, processes)
    _name_in_pid_file(root, operator)

    proc = _run([sys.executable, str(DEMO), "--stop"], root)
    assert proc.returncode == 0, proc.stderr
    assert f"stopped the operator the demo left running (pid {operator.pid})" in proc.stdout
    assert operator.wait(timeout=10) == 0, "SIGTERM: the stand-in exits 0 on it"
    assert not (root / "pids" / "suanli-operator.pid").exists()

    again = _run([sys.executable, str(DEMO), "--stop"], root)
    assert again.returncode == 0 and "no operator left running by the demo" in again.stdout


def test_a_stale_pid_file_stops_nothing(tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    root = _state(tmp_path / "cluster")
    other = _bystander(processes)  # the pid was reused by a process that is not the operator
    _name_in_pid_file(root, other)
    proc = _run([sys.executable, str(DEMO), "--stop"], root)
    assert proc.returncode == 0 and "no operator left running" in proc.stdout, proc.stdout + proc.stderr
    assert other.poll() is None, "a process that is not `suanli run` must be left alone"

    _name_in_pid_file(root, other)
    down = _run(["bash", str(CLUSTER_SCRIPTS / "down.sh")], root)
    assert down.returncode == 0, down.stderr
    assert other.poll() is None and "stopping the operator" not in down.stderr


def test_the_hubs_down_stops_the_operator_first(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    root = _state(tmp_path / "cluster")
    operator = _stand_in(tmp_path, processes)
    _name_in_pid_file(root, operator)

    down = _run(["bash", str(CLUSTER_SCRIPTS / "down.sh")], root)
    assert down.returncode == 0, down.stderr
    assert f"stopping the operator the demo left running (pid {operator.pid})" in down.stderr
    assert operator.wait(timeout=10) == 0
    assert not root.exists() or not any(root.iterdir()), sorted(p.name for p in root.iterdir())
