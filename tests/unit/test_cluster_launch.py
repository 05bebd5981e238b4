"""tests/cluster/components.sh starts a component and knows it is running only once it runs the
component's binary, so up.sh never reports a component still starting as one that exited.

CI once failed `make cluster-up` with "kwok exited while waiting for kube-controller-manager" and an
empty kwok log: the pid up.sh recorded was still its own forked shell (or setsid), not yet kwok, when
the health-check loop looked. Here `setsid` is a stand-in that waits before it execs the real one
(a mock, and why: it widens that fork-to-exec gap, which a busy machine opens only now and then, so
the test sees it every time). The component is a copy of the real `sleep` (an ELF binary, so
/proc/PID/exe names it as it names kwok); everything else is the real scripts and the real bash."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
CLUSTER = REPO / "tests" / "cluster"

SCRIPT = """
set -euo pipefail
source {cluster}/lib.sh
source {cluster}/components.sh
mkdir -p "$PIDS" "$LOGS" "$KWOK_BIN_DIR"
cp {program} "$KWOK_BIN_DIR/kwok"
DEADLINE=$((SECONDS + 2))
launch kwok {args}
trap 'stop_components kwok' EXIT
wait_until "a condition that is never true" test -e "$STATE_DIR/never"
"""


def _run(tmp_path: pathlib.Path, program: str, args: str) -> subprocess.CompletedProcess[str]:
    bash, real_setsid, found = shutil.which("bash"), shutil.which("setsid"), shutil.which(program)
    assert bash and real_setsid and found, "bash, setsid and the program are needed on the test host"
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    (shim_dir / "setsid").write_text(f'#!{bash}\nsleep 0.5\nexec {real_setsid} "$@"\n')
    (shim_dir / "setsid").chmod(0o755)
    cache = tmp_path / "cache"
    env = {"PATH": f"{shim_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "SUANLI_CACHE": str(cache),
           "SUANLI_CLUSTER_DIR": str(tmp_path / "state"), "SUANLI_READY_TIMEOUT_SECONDS": "2"}
    script = SCRIPT.format(cluster=CLUSTER, program=found, args=args)
    return subprocess.run([bash, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_component_still_starting_is_not_reported_as_exited(tmp_path: pathlib.Path) -> None:
    done = _run(tmp_path, "sleep", "30")
    # The component runs on, so the wait ends at its deadline; the old launch reported "kwok exited"
    # at once, while setsid had not yet exec'd it.
    assert done.returncode == 1, done.stderr
    assert "timed out after 2s waiting for a condition that is never true" in done.stderr, done.stderr
    assert "exited" not in done.stderr, done.stderr
    assert "stopping kwok" in done.stderr, done.stderr  # it was running, and is stopped again


def test_a_component_that_dies_at_once_is_still_reported_with_its_log(tmp_path: pathlib.Path) -> None:
    done = _run(tmp_path, "false", "")
    assert done.returncode == 1, done.stderr
    assert "kwok exited while waiting for a condition that is never true" in done.stderr, done.stderr
    assert "was not running" not in done.stderr, done.stderr
