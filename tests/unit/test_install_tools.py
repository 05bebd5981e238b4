"""tests/tools/install_tools.sh on a machine without podman: it installs podman, runc and mmdebstrap with
apt-get, pinned first, and falls back to Debian's current packages when the pins are gone.

apt-get is a stand-in here (mock, and why: the real one would install packages on the test host, and a
warm machine already has podman, so the install path would never run). Everything else is the real
script and the real bash, flock, timeout, head, awk and chmod, on a PATH that holds only those."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "tools" / "install_tools.sh"

APT_GET = """#!{bash}
echo "apt-get $*" >> "{log}"
case "$1" in
  update) exit 0 ;;
  install)
    for arg in "$@"; do
      case "$arg" in *=*) echo "E: Version '${{arg#*=}}' for '${{arg%%=*}}' was not found" >&2; exit 100 ;; esac
    done
    for tool in podman runc mmdebstrap; do
      printf '#!{bash}\\necho "%s version 9.9 (stand-in)"\\n' "$tool" > "{bin}/$tool"
      chmod +x "{bin}/$tool"
    done ;;
esac
"""


def test_podman_is_installed_with_apt_get_falling_back_from_the_pins(tmp_path: pathlib.Path) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    for tool in ("bash", "flock", "timeout", "head", "awk", "mkdir", "cat", "dirname", "chmod"):
        found = shutil.which(tool)
        assert found, f"{tool} is needed on the test host"
        (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash")
    (bin_dir / "apt-get").write_text(APT_GET.format(bash=bash, log=log, bin=bin_dir))
    (bin_dir / "id").write_text(f"#!{bash}\necho 0\n")  # apt_install wants root
    for stub in ("apt-get", "id"):
        (bin_dir / stub).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "SUANLI_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(bin_dir / "bash"), str(SCRIPT), "podman"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "apt-get update -qq", calls
    assert calls[1].startswith("apt-get install -y -qq --no-install-recommends podman=") and "runc=" in calls[1], calls
    assert calls[2] == "apt-get install -y -qq --no-install-recommends podman runc mmdebstrap", calls
    assert len(calls) == 3, calls  # one update: the fallback does not update again
    assert "the pinned versions are not offered any more" in done.stderr
    assert "podman: podman version 9.9 (stand-in)" in done.stderr
    assert os.access(bin_dir / "podman", os.X_OK)
