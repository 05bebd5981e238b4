"""Fake accelerator exporters on 127.0.0.1 that serve realistic DCGM, Kepler and npu-exporter series.

Each device draws a constant, known power, so the energy a job "used" is hand-checkable:
watts x seconds. Counters (DCGM's mJ since boot, Kepler's joules) grow from a since-boot offset at
exactly that rate against the wall clock, as the real exporters do between scrapes.

    exporter = FakeExporter([Gpu("team-a", "train-0", gpu=0, watts=300), ...]).start()
    exporter.address  # "127.0.0.1:PORT", a scrape target
    exporter.stop()

Series and labels follow the exporters' own code (see suanli.measure.sources):
- `Gpu`: DCGM_FI_DEV_POWER_USAGE (W) and DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ) per GPU with
  gpu, UUID, device, modelName, Hostname and the pod mapping namespace/pod/container;
- `KeplerContainer`: kepler_container_gpu_joules_total and kepler_container_joules_total (J) per
  container, split into mode="dynamic" and mode="idle";
- `AscendChip`: npu_chip_info_power (W) per chip; with `pod_labels_on_chip` (newer exporters) the
  chip carries namespace/pod_name/container_name, otherwise (v5) only container_npu_utilization does.
"""

from __future__ import annotations

import dataclasses
import http.server
import threading
import time
import zlib
from collections.abc import Callable, Iterable


@dataclasses.dataclass(frozen=True)
class Gpu:
    namespace: str
    pod: str
    gpu: int
    watts: float
    node: str = "gpu-node-1"
    container: str = "main"
    model: str = "NVIDIA A100-SXM4-80GB"
    energy_counter: bool = True  # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION is not in every counters CSV


@dataclasses.dataclass(frozen=True)
class KeplerContainer:
    namespace: str
    pod: str
    gpu_watts: float  # the container's GPU share
    other_watts: float = 0.0  # CPU package, DRAM and the rest (in kepler_container_joules_total only)
    container: str = "main"
    node: str = "gpu-node-1"
    idle_share: float = 0.1  # part of the energy Kepler attributes to mode="idle"


@dataclasses.dataclass(frozen=True)
class AscendChip:
    namespace: str
    pod: str
    chip: int
    watts: float
    pod_labels_on_chip: bool = True
    container: str = "main"
    model: str = "Ascend910B"


def _labels(**pairs: object) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


class FakeExporter:
    """A /metrics endpoint on 127.0.0.1 for a set of devices; `clock` is the wall clock by default."""

    def __init__(self, devices: Iterable[object], clock: Callable[[], float] = time.time):
        self.devices = list(devices)
        self.clock = clock
        self.started_at = clock()
        self.scrapes = 0
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- exposition -------------------------------------------------------------------------------
    def exposition(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        elapsed = now - self.started_at
        boot = 86_400.0  # the counters have been running for a day before the test
        lines: list[str] = []
        gpus = [d for d in self.devices if isinstance(d, Gpu)]
        kepler = [d for d in self.devices if isinstance(d, KeplerContainer)]
        chips = [d for d in self.devices if isinstance(d, AscendChip)]
        if gpus:
            lines += [
                "# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).",
                "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
            ]
            for g in gpus:
                lines.append(f"DCGM_FI_DEV_POWER_USAGE{self._gpu_labels(g)} {g.watts:.3f}")
            lines += [
                "# HELP DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION Total energy consumption since boot (in mJ).",
                "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
            ]
            for g in gpus:
                if g.energy_counter:
                    mj = g.watts * (boot + elapsed) * 1000
                    lines.append(f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{self._gpu_labels(g)} {mj:.0f}")
        if kepler:
            for metric, help_text in (
                ("kepler_container_gpu_joules_total", "Aggregated GPU value in joules"),
                (
                    "kepler_container_joules_total",
                    "Aggregated RAPL value in package, dram, gpu and other in joules",
                ),
            ):
                lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
                for k in kepler:
                    watts = (
                        k.gpu_watts
                        if metric == "kepler_container_gpu_joules_total"
                        else k.gpu_watts + k.other_watts
                    )
                    for mode, share in (("dynamic", 1 - k.idle_share), ("idle", k.idle_share)):
                        joules = watts * share * (boot + elapsed)
                        labels = _labels(
                            container_id=f"cri-{k.pod}-{k.container}",
                            container_name=k.container,
                            container_namespace=k.namespace,
                            mode=mode,
                            pod_name=k.pod,
                            source="",
                        )
                        lines.append(f"{metric}{labels} {joules:.3f}")
        if chips:
            lines += ["# HELP npu_chip_info_power the npu power", "# TYPE npu_chip_info_power gauge"]
            for c in chips:
                base = {
                    "id": c.chip,
                    "model_name": c.model,
                    "pcie_bus_info": f"0000:{0xC1 + c.chip:02X}:00.0",
                    "vdie_id": f"{c.chip:08X}-5A3E-1D2C-0000-{c.pod.encode().hex()[:12]:0<12}",
                }
                if c.pod_labels_on_chip:
                    base |= {"container_name": c.container, "namespace": c.namespace, "pod_name": c.pod}
                lines.append(f"npu_chip_info_power{_labels(**base)} {c.watts:.1f}")
            old = [c for c in chips if not c.pod_labels_on_chip]
            if old:
                lines += [
                    "# HELP container_npu_utilization the npu ai core utilization in container, unit is '%'",
                    "# TYPE container_npu_utilization gauge",
                ]
                for c in old:
                    labels = _labels(
                        container_name=c.container,
                        id=c.chip,
                        model_name=c.model,
                        namespace=c.namespace,
                        pcie_bus_info=f"0000:{0xC1 + c.chip:02X}:00.0",
                        pod_name=c.pod,
                        vdie_id=f"{c.chip:08X}",
                    )
                    lines.append(f"container_npu_utilization{labels} 87")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _gpu_labels(g: Gpu) -> str:
        return _labels(
            gpu=g.gpu,
            UUID=f"GPU-{zlib.crc32(f'{g.node}/{g.gpu}'.encode()):08x}-6b1e-4c52-9d3a-{g.gpu:012d}",
            device=f"nvidia{g.gpu}",
            modelName=g.model,
            Hostname=g.node,
            DCGM_FI_DRIVER_VERSION="550.54.15",
            container=g.container,
            namespace=g.namespace,
            pod=g.pod,
        )

    # -- server -----------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "start() the exporter first"
        return int(self._server.server_address[1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeExporter:
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.exposition().encode()
                exporter.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-exporter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeExporter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
