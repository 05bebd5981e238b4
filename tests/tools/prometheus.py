"""A real Prometheus server on 127.0.0.1 for tests: start it with a scrape config, query it, stop it.

    with PrometheusServer.start(tmp_path, [{"job_name": "op", "static_configs": [{"targets": [addr]}]}]) as prom:
        prom.wait_for_targets_up(["op"], timeout=20)
        prom.wait_for_series('suanli_jobs_total', timeout=20)
        prom.query('sum(suanli_jobs_total)')

The binary: `prometheus` on PATH, else `$SUANLI_CACHE/bin/prometheus` (default ~/.cache/suanli),
else Debian's `prometheus` package is downloaded and only the server binary is extracted there
(`apt-get download` + `dpkg-deb -x`, the way tests/tools/install_tools.sh gets promtool). The
package is not installed: installing it would run its postinst, which enables and starts a
system service listening on 0.0.0.0:9090. Without apt the fixture fails saying what to install.

Each server gets a fresh data directory, a free port on 127.0.0.1 only, `scrape_interval: 1s`
unless a job says otherwise, and is stopped (SIGTERM, then SIGKILL after 10 s) on exit.
Every wait has a deadline; a failure message carries the tail of the server's log.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

CACHE_BIN = Path(os.environ.get("SUANLI_CACHE", Path.home() / ".cache" / "suanli")) / "bin"
READY_TIMEOUT_S = 30.0


class PrometheusUnavailable(RuntimeError):
    """No prometheus binary and no way to get one here; the message says what to install."""


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise PrometheusUnavailable(
            f"{' '.join(cmd)} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}"
        )


def ensure_binary() -> Path:
    """The path of a prometheus server binary, extracting Debian's package on first use."""
    found = shutil.which("prometheus")
    if found:
        return Path(found)
    cached = CACHE_BIN / "prometheus"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise PrometheusUnavailable(
            "these tests need a Prometheus server binary: put `prometheus` on PATH "
            f"(https://prometheus.io/download/) or at {cached}; on Debian/Ubuntu it is extracted "
            "from the `prometheus` package automatically"
        )
    CACHE_BIN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            _run(["apt-get", "download", "-qq", "prometheus"], cwd=work)
        except PrometheusUnavailable:
            if os.geteuid() != 0:
                raise PrometheusUnavailable(
                    "`apt-get download prometheus` failed and refreshing the package lists needs root: "
                    "run `sudo apt-get update` once, or put `prometheus` on PATH"
                ) from None
            _run(["apt-get", "update", "-qq"], timeout=300)
            _run(["apt-get", "download", "-qq", "prometheus"], cwd=work)
        debs = sorted(work.glob("prometheus_*.deb"))
        if not debs:
            raise PrometheusUnavailable("apt-get download prometheus produced no .deb")
        _run(["dpkg-deb", "-x", str(debs[0]), str(work / "x")])
        binary = work / "x" / "usr" / "bin" / "prometheus"
        if not binary.is_file():
            raise PrometheusUnavailable(f"{debs[0].name} has no usr/bin/prometheus")
        partial = CACHE_BIN / f".prometheus.{os.getpid()}"
        shutil.copy2(binary, partial)
        partial.chmod(0o755)
        partial.replace(cached)  # atomic: parallel test runs never see half a binary
    return cached


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One running Prometheus; use `PrometheusServer.start(...)` (also a context manager)."""

    def __init__(self, workdir: Path, process: subprocess.Popen[bytes], port: int, log_path: Path):
        self.workdir = workdir
        self.process = process
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    # -- lifecycle --------------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        workdir: Path,
        scrape_configs: list[dict[str, Any]],
        scrape_interval: str = "1s",
        extra_args: tuple[str, ...] = (),
        ready_timeout: float = READY_TIMEOUT_S,
    ) -> PrometheusServer:
        binary = ensure_binary()
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": "15s",
            },
            "scrape_configs": scrape_configs,
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        log_path = workdir / "prometheus.log"
        cmd = [
            str(binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
            *extra_args,
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = cls(workdir, process, port, log_path)
        try:
            server._wait_ready(ready_timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {self.process.returncode} before ready:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(
            f"prometheus not ready at {self.url} within {timeout:g}s ({last}):\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- API --------------------------------------------------------------------------------------
    def api(self, path: str, params: dict[str, str] | None = None, timeout: float = 10) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                doc = json.load(response)
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read() or b"{}")
        if doc.get("status") != "success":
            raise AssertionError(f"GET {url}: {doc.get('errorType')}: {doc.get('error')}")
        return doc["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; returns the result list ({"metric": {...}, "value": [ts, "v"]})."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, promql: str, at: float | None = None) -> float:
        """The single value of a query that must return exactly one series."""
        result = self.query(promql, at)
        assert len(result) == 1, f"{promql}: expected one series, got {len(result)}: {result}"
        return float(result[0]["value"][1])

    def wait_for_series(self, promql: str, timeout: float = 20, min_series: int = 1) -> list[dict[str, Any]]:
        """Poll until the query returns at least `min_series` series; fail with the targets' state."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(promql)
            if len(result) >= min_series:
                return result
            time.sleep(0.25)
        raise TimeoutError(
            f"{promql!r} returned {len(result)} series (wanted >= {min_series}) within {timeout:g}s; "
            f"targets: {self.describe_targets()}"
        )

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", {"state": "active"})["activeTargets"]
        return active

    def describe_targets(self) -> str:
        return "; ".join(
            f"{t['labels'].get('job')} {t['scrapeUrl']} {t['health']} {t.get('lastError') or ''}".strip()
            for t in self.targets()
        )

    def wait_for_targets_up(self, jobs: list[str] | None = None, timeout: float = 20) -> None:
        """Wait until every target (of these jobs) has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = [t for t in self.targets() if jobs is None or t["labels"].get("job") in jobs]
            healthy = bool(targets) and all(t["health"] == "up" for t in targets)
            if healthy and (jobs is None or {t["labels"]["job"] for t in targets} >= set(jobs)):
                return
            time.sleep(0.2)
        raise TimeoutError(f"targets not up within {timeout:g}s: {self.describe_targets()}")

    def wait_for_scrape_after(
        self, instant: float, jobs: list[str] | None = None, timeout: float = 10
    ) -> None:
        """Wait until every target (of these jobs) was last scraped after `instant` (Unix seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            targets = [t for t in self.targets() if jobs is None or t["labels"].get("job") in jobs]
            if targets and all(_rfc3339(t["lastScrape"]) > instant and t["health"] == "up" for t in targets):
                return
            time.sleep(0.2)
        raise TimeoutError(f"no scrape after {instant:.3f} within {timeout:g}s: {self.describe_targets()}")


def _rfc3339(text: str) -> float:
    """Unix seconds of Prometheus' RFC 3339 timestamps (nanosecond fractions cut to microseconds)."""
    match = re.match(r"(.*?T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = (match[3] or "Z").replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(match[1] + (match[2] or "")[:7] + zone).timestamp()


def static_job(name: str, targets: list[str], **extra: Any) -> dict[str, Any]:
    """A scrape config with static targets, e.g. static_job("suanli", ["127.0.0.1:8080"])."""
    job: dict[str, Any] = {"job_name": name, "static_configs": [{"targets": targets}]}
    labels = extra.pop("labels", None)
    if labels:
        job["static_configs"][0]["labels"] = labels
    job.update(extra)
    return job
