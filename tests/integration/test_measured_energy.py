"""Measured energy against a real Prometheus scraping fake DCGM, Kepler and npu-exporter targets.

One Prometheus (1 s scrapes) and a few fake exporters run for the whole module; every "job" below
ran during the same real window of WINDOW_S seconds while its devices drew a known, constant
power, so each expected energy is watts x WINDOW_S, worked out by hand next to the test.
No Kubernetes is needed.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.tools import prometheus as prometheus_tools
from tests.tools.fake_exporters import AscendChip, FakeExporter, Gpu, KeplerContainer
from tests.tools.prometheus_plugin import prometheus_binary  # noqa: F401  (fixture)

from suanli import settings as settings_mod
from suanli.ledger import energy as energy_ledger
from suanli.measure import energy_meter

WINDOW_S = 20.0
REL = 0.03  # counters are extrapolated to the window's edges from 1 s scrapes: within 3%
KWH = 3.6e6  # joules per kWh


@dataclass
class Scene:
    prom: prometheus_tools.PrometheusServer
    start: float
    end: float

    def config(self, **overrides: object) -> settings_mod.MeasuredEnergySettings:
        values: dict[str, object] = {
            "prometheus_url": self.prom.url,
            "min_window_seconds": 5,
            "query_timeout_seconds": 2,
        }
        values.update(overrides)
        return settings_mod.MeasuredEnergySettings.model_validate(values)

    def run(
        self, namespace: str, pods: tuple[str, ...], accelerator_type: str, accelerators: int
    ) -> energy_meter.JobRun:
        return energy_meter.JobRun(namespace, pods, self.start, self.end, accelerator_type, accelerators)


ACCELERATORS = [
    # team-a/train: 2 pods x 2 GPUs x 300 W on two nodes = 1200 W; Kepler gives each pod its
    # 600 W of GPU and 100 W of CPU/DRAM.
    *(
        Gpu("team-a", f"train-{p}", gpu=g, watts=300, node=f"gpu-node-{p + 1}")
        for p in (0, 1)
        for g in (0, 1)
    ),
    *(KeplerContainer("team-a", f"train-{p}", gpu_watts=600, other_watts=100) for p in (0, 1)),
    # team-b: one pod seen only by Kepler (250 W), one GPU pair without DCGM's energy counter (2 x 200 W)
    KeplerContainer("team-b", "kepler-only-0", gpu_watts=250),
    *(
        Gpu("team-b", "no-counter-0", gpu=g, watts=200, node="gpu-node-3", energy_counter=False)
        for g in (2, 3)
    ),
    # team-c: Ascend 910B, new exporter (pod labels on the chip, 4 x 350 W) and v5 (joined, 2 x 310 W)
    *(AscendChip("team-c", "npu-new-0", chip=c, watts=350) for c in range(4)),
    *(AscendChip("team-c", "npu-old-0", chip=c, watts=310, pod_labels_on_chip=False) for c in (4, 5)),
    # team-g: an exporter reporting nonsense (5 kW per GPU)
    Gpu("team-g", "liar-0", gpu=0, watts=5000, node="gpu-node-4"),
]
# team-e: a DCGM exporter scraped like a ServiceMonitor does (target labels namespace/pod/container),
# so its own pod labels arrive as exported_namespace/exported_pod: 2 x 400 W
RELABELLED = [Gpu("team-e", "relabelled-0", gpu=g, watts=400, node="gpu-node-5") for g in (0, 1)]
# team-f: one exporter scraped by two jobs: every GPU series appears twice
DUPLICATED = [Gpu("team-f", "dup-0", gpu=0, watts=300, node="gpu-node-6")]


@pytest.fixture(scope="module")
def scene(prometheus_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:  # noqa: F811
    exporters = [FakeExporter(devices).start() for devices in (ACCELERATORS, RELABELLED, DUPLICATED)]
    main, relabelled, duplicated = exporters
    jobs = [
        prometheus_tools.static_job("accelerators", [main.address]),
        prometheus_tools.static_job(
            "dcgm-servicemonitor",
            [relabelled.address],
            labels={
                "namespace": "gpu-operator",
                "pod": "nvidia-dcgm-exporter-x7k2p",
                "container": "exporter",
            },
        ),
        prometheus_tools.static_job("dup-1", [duplicated.address]),
        prometheus_tools.static_job("dup-2", [duplicated.address]),
    ]
    prom = prometheus_tools.PrometheusServer.start(tmp_path_factory.mktemp("prometheus"), jobs)
    try:
        prom.wait_for_targets_up(["accelerators", "dcgm-servicemonitor", "dup-1", "dup-2"], timeout=20)
        # The jobs "run" from now for WINDOW_S; the scene is ready once Prometheus holds a sample of
        # every target from after the window's end (waited for, not slept: a slow scrape waits longer).
        start = time.time()
        end = start + WINDOW_S
        prom.wait_for_scrape_after(end + 0.05, timeout=WINDOW_S + 10)
        yield Scene(prom, start, end)
    finally:
        prom.stop()
        for exporter in exporters:
            exporter.stop()


def _kwh(watts: float) -> float:
    return watts * WINDOW_S / KWH


def _report(what: str, measured: float, expected: float) -> None:
    """Shown with -s: the numbers behind each tolerance."""
    print(
        f"\n{what}: measured {measured:.7f} kWh, expected {expected:.7f} kWh ({measured / expected - 1:+.3%})"
    )


@pytest.mark.parametrize(
    ("source", "watts"),
    [
        ("dcgm-energy", 4 * 300),  # 4 GPUs x 300 W x 20 s = 24 kJ = 0.006667 kWh
        ("dcgm-power", 4 * 300),
        ("kepler-gpu", 2 * 600),  # the pods' GPU share only
        ("kepler", 2 * (600 + 100)),  # whole containers: 1400 W x 20 s = 0.007778 kWh
    ],
)
def test_each_gpu_source_measures_the_known_power(scene: Scene, source: str, watts: float) -> None:
    config = scene.config(sources=(source,))
    outcome = energy_meter.measure_job(config, scene.run("team-a", ("train-0", "train-1"), "GPU", 4))
    assert outcome.measurement is not None, outcome.reasons
    assert outcome.measurement.source == source
    assert outcome.measurement.kwh_it == pytest.approx(_kwh(watts), rel=REL)
    _report(source, outcome.measurement.kwh_it, _kwh(watts))


def test_ascend_power_with_pod_labels_on_the_chip(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-c", ("npu-new-0",), "NPU", 4))
    assert outcome.measurement is not None, outcome.reasons
    assert outcome.measurement.source == "ascend-power"
    assert outcome.measurement.kwh_it == pytest.approx(_kwh(4 * 350), rel=REL)  # 0.007778 kWh
    _report("ascend-power (chip labels)", outcome.measurement.kwh_it, _kwh(4 * 350))


def test_ascend_power_joined_to_pods_for_v5_exporters(scene: Scene) -> None:
    # the joined query is a subquery: its step is the scrape interval here
    outcome = energy_meter.measure_job(
        scene.config(subquery_step_seconds=1), scene.run("team-c", ("npu-old-0",), "NPU", 2)
    )
    assert outcome.measurement is not None, outcome.reasons
    assert "joined" in outcome.measurement.detail
    assert outcome.measurement.kwh_it == pytest.approx(_kwh(2 * 310), rel=REL)  # 0.003444 kWh
    _report("ascend-power (joined)", outcome.measurement.kwh_it, _kwh(2 * 310))


def test_default_order_prefers_the_hardware_energy_counter(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-a", ("train-0", "train-1"), "GPU", 4))
    assert outcome.measurement is not None and outcome.measurement.source == "dcgm-energy"
    assert outcome.reasons == ()


def test_falls_back_to_the_power_gauge_then_to_kepler(scene: Scene) -> None:
    no_counter = energy_meter.measure_job(scene.config(), scene.run("team-b", ("no-counter-0",), "GPU", 2))
    assert no_counter.measurement is not None and no_counter.measurement.source == "dcgm-power"
    assert no_counter.measurement.kwh_it == pytest.approx(_kwh(2 * 200), rel=REL)
    assert any("dcgm-energy: no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series" in r for r in no_counter.reasons)

    kepler_only = energy_meter.measure_job(scene.config(), scene.run("team-b", ("kepler-only-0",), "GPU", 1))
    assert kepler_only.measurement is not None and kepler_only.measurement.source == "kepler-gpu"
    assert kepler_only.measurement.kwh_it == pytest.approx(_kwh(250), rel=REL)
    assert [r.split(":")[0] for r in kepler_only.reasons] == ["dcgm-energy"] * 2 + ["dcgm-power"] * 2


def test_servicemonitor_relabelled_dcgm_labels_are_found(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-e", ("relabelled-0",), "GPU", 2))
    assert outcome.measurement is not None, outcome.reasons
    assert "exported_namespace/exported_pod" in outcome.measurement.detail
    assert outcome.measurement.kwh_it == pytest.approx(_kwh(2 * 400), rel=REL)


def test_sources_only_apply_to_their_accelerator_type(scene: Scene) -> None:
    # the NPU pods have no DCGM or Kepler series, and DCGM/Kepler never answer for an NPU job
    outcome = energy_meter.measure_job(
        scene.config(sources=("dcgm-power", "kepler-gpu")), scene.run("team-c", ("npu-new-0",), "NPU", 4)
    )
    assert outcome.measurement is None
    assert outcome.reasons == ("no configured source measures NPU (dcgm-power, kepler-gpu)",)


def test_no_series_gives_none_and_says_what_was_looked_for(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-d", ("ghost-0",), "GPU", 8))
    assert outcome.measurement is None
    assert any("no DCGM_FI_DEV_POWER_USAGE series with labels namespace/pod" in r for r in outcome.reasons)
    assert energy_meter.measure(scene.config(), scene.run("team-d", ("ghost-0",), "GPU", 8)) is None


def test_duplicate_scrapes_are_refused_not_double_counted(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-f", ("dup-0",), "GPU", 1))
    assert outcome.measurement is None
    assert any(
        "2 DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series for 1 accelerators" in r for r in outcome.reasons
    )


def test_implausible_power_is_refused(scene: Scene) -> None:
    outcome = energy_meter.measure_job(scene.config(), scene.run("team-g", ("liar-0",), "GPU", 1))
    assert outcome.measurement is None
    assert any("5000 W per accelerator is above the plausible 1500 W" in r for r in outcome.reasons)


def test_prometheus_down_gives_none_quickly() -> None:
    url = f"http://127.0.0.1:{prometheus_tools.free_port()}"  # nothing listens there
    config = settings_mod.MeasuredEnergySettings(prometheus_url=url, min_window_seconds=1)
    run = energy_meter.JobRun("team-a", ("train-0",), 1000.0, 1060.0, "GPU", 2)
    began = time.monotonic()
    outcome = energy_meter.measure_job(config, run)
    assert time.monotonic() - began < 1.0
    assert outcome.measurement is None
    assert len(outcome.reasons) == 1 and f"Prometheus at {url} is unreachable" in outcome.reasons[0]


def test_prometheus_hanging_gives_none_after_the_timeout() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = settings_mod.MeasuredEnergySettings(
            prometheus_url=url, min_window_seconds=1, query_timeout_seconds=0.5
        )
        run = energy_meter.JobRun("team-a", ("train-0",), 1000.0, 1060.0, "GPU", 2)
        began = time.monotonic()
        outcome = energy_meter.measure_job(config, run)
        elapsed = time.monotonic() - began
    assert outcome.measurement is None
    assert elapsed < 2.0, "one timeout, not one per source"
    assert "did not answer within 0.5s" in outcome.reasons[-1] or "timed out" in outcome.reasons[-1]


def test_measured_energy_settles_the_ledger(scene: Scene) -> None:
    ledger = energy_ledger.EnergyLedger([("guian-ai", "Asia/Shanghai", 10.0, "Day")])
    ledger.roll(scene.end)
    job = ("team-a", "llm-finetune")
    estimated = 0.02  # what placement reserved: facility kWh, PUE included
    ledger.reserve("guian-ai", job, estimated)

    measurement = energy_meter.measure(scene.config(), scene.run("team-a", ("train-0", "train-1"), "GPU", 4))
    settled = energy_meter.settlement(measurement, estimated, pue=1.15)
    ledger.settle(job, settled.kwh)

    account = ledger.account("guian-ai")
    assert settled.source == "measured"
    assert account.reserved_kwh == 0
    assert account.used_kwh == pytest.approx(_kwh(1200) * 1.15, rel=REL)  # 0.007667 kWh facility
    assert account.remaining_kwh == pytest.approx(10.0 - _kwh(1200) * 1.15, rel=1e-6)
