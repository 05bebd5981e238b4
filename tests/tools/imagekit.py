"""The operator image for the tests: built with podman (tests/tools/image.sh, `make image`), and run
the way the chart's Deployment runs it.

    image = imagekit.ensure_image()                      # builds it, or reuses the cached layers (seconds)
    imagekit.podman("image", "inspect", image)           # podman with this host's flags (runc, cgroupfs)
    with imagekit.Container(image, "suanli-e2e-x", run_args, args) as c: ...

SUANLI_TEST_IMAGE=<ref> tests an image built elsewhere instead (nothing is built then).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SCRIPT = ROOT / "tests" / "tools" / "image.sh"
IMAGE = os.environ.get("SUANLI_TEST_IMAGE", "localhost/suanli:e2e")
# A cold build (Debian base made with mmdebstrap, the lock's wheels downloaded) takes minutes; a warm one seconds.
BUILD_TIMEOUT_S = float(os.environ.get("SUANLI_IMAGE_BUILD_TIMEOUT_SECONDS", "1800"))
PODMAN_FLAGS = shlex.split(os.environ.get("SUANLI_PODMAN_FLAGS", "--runtime runc --cgroup-manager cgroupfs --events-backend file"))
NO_CONTAINERS_HINT = (
    "podman could not run a container on this machine. Containers need root (or user namespaces), the runc "
    "runtime and a writable /var/lib/containers; inside an unprivileged container or a sandbox without "
    "mount/namespace rights they are impossible, and this test cannot run there: run it on a VM or a "
    "machine where `podman run --rm --network host IMAGE --help` works"
)


class ImageError(AssertionError):
    """The image could not be built or run; the message says which step and what to do."""


def podman(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """podman with this host's flags (SUANLI_PODMAN_FLAGS; default: runc, cgroupfs, file events)."""
    try:
        proc = subprocess.run(["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise ImageError("podman is not installed: `bash tests/tools/install_tools.sh podman` installs it "
                         "(Debian's podman, runc, mmdebstrap; as root)") from exc
    if check and proc.returncode != 0:
        raise ImageError(f"podman {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def ensure_image(image: str = IMAGE, base: str = "local") -> tuple[str, float]:
    """Build ``image`` from the checkout with `tests/tools/image.sh build` on the given IMAGE_BASE (the
    tests use the local Debian base: the official one cannot be pulled everywhere); cached layers make
    a warm build take seconds. With SUANLI_TEST_IMAGE set, that image is used as is. Returns the image
    and the seconds the build took."""
    started = time.monotonic()
    if "SUANLI_TEST_IMAGE" in os.environ:
        exists = podman("image", "exists", image)
        if exists.returncode == 1:
            raise ImageError(f"SUANLI_TEST_IMAGE={image} is not in podman's storage: build or pull it first")
        if exists.returncode != 0:
            raise ImageError(f"{NO_CONTAINERS_HINT}.\npodman image exists {image}: exit {exists.returncode}\n{exists.stderr[-2000:]}")
        return image, 0.0
    env = {**os.environ, "IMAGE": image, "IMAGE_BASE": base, "SUANLI_PODMAN_FLAGS": shlex.join(PODMAN_FLAGS)}
    try:
        proc = subprocess.run(["bash", str(IMAGE_SCRIPT), "build"], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"tests/tools/image.sh build did not finish within {BUILD_TIMEOUT_S:g}s "
                         "(SUANLI_IMAGE_BUILD_TIMEOUT_SECONDS)") from exc
    if proc.returncode != 0:
        raise ImageError(f"building the image failed (IMAGE={image} IMAGE_BASE={base} bash tests/tools/image.sh build, "
                         f"exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return image, time.monotonic() - started


def inspect(image: str) -> dict[str, Any]:
    """`podman image inspect`'s record of ``image``."""
    import json

    return json.loads(podman("image", "inspect", image, check=True).stdout)[0]


def can_run(image: str) -> None:
    """Start a throw-away container of ``image`` (`suanli --help`, host network, no capabilities), or
    raise ImageError saying podman cannot run containers here."""
    proc = podman("run", "--rm", "--network", "host", "--cap-drop", "ALL", *ulimits(), image, "--help", timeout=120)
    if proc.returncode != 0 or "suanli" not in proc.stdout:
        raise ImageError(f"{NO_CONTAINERS_HINT}.\npodman run --rm {image} --help: exit {proc.returncode}\n"
                         f"{proc.stderr[-2000:]}{proc.stdout[-1000:]}")


def ulimits() -> list[str]:
    """Explicit limits, at most this process's own: podman's default (nofile 1048576) is above the hard
    limit of some hosts, where runc then fails with "error setting rlimit type 7: operation not
    permitted"; `--ulimit host` fails the same way with podman 4.3. nproc counts every thread of uid
    65532 on the host; 4096 is ample for the operator's thread pools."""
    import resource

    soft_nofile, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = min(soft_nofile, 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


class Container:
    """One detached `podman run` of ``image`` named ``name``; `stop()` is `podman stop` (SIGTERM, then
    SIGKILL after ``grace_s``), `remove()` deletes it. ``run_args`` are podman's, ``args`` the command's."""

    def __init__(self, image: str, name: str, run_args: Sequence[str], args: Sequence[str], grace_s: float):
        self.image, self.name, self.grace_s = image, name, grace_s
        self.run_args, self.args = list(run_args), list(args)
        self.started_at = 0.0

    def start(self) -> Self:
        self.started_at = time.monotonic()
        podman("run", "--detach", "--name", self.name, "--stop-timeout", f"{self.grace_s:g}", *self.run_args,
               self.image, *self.args, check=True)
        return self

    def state(self) -> dict[str, Any]:
        """The container's State (Status, Running, ExitCode, ...)."""
        import json

        proc = podman("container", "inspect", "--format", "{{json .State}}", self.name, check=True)
        state: dict[str, Any] = json.loads(proc.stdout)
        return state

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def logs(self) -> str:
        proc = podman("logs", self.name)
        return proc.stdout + proc.stderr

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.logs().splitlines()[-lines:])

    def stop(self) -> tuple[int, float]:
        """SIGTERM (podman stop), SIGKILL after the grace period; the exit code and the seconds it took."""
        started = time.monotonic()
        podman("stop", "--time", f"{self.grace_s:g}", self.name, timeout=self.grace_s + 60, check=True)
        return int(self.state()["ExitCode"]), time.monotonic() - started

    def remove(self) -> None:
        podman("rm", "--force", "--time", "0", self.name, timeout=120)
