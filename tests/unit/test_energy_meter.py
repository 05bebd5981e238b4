"""The energy meter's queries, answer parsing and decisions, replaying recorded Prometheus answers.

No network: the meter takes its HTTP fetch as an argument, and these tests hand it a replay of
answers a real Prometheus gave (tests/unit/prometheus_answers/energy_queries.json; how they were
recorded is written in the file). The live version is tests/integration/test_measured_energy.py.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
from pathlib import Path

import pydantic
import pytest

from suanli import settings as settings_mod
from suanli.ledger import energy as energy_ledger
from suanli.measure import energy_meter, sources

RECORDED = json.loads((Path(__file__).parent / "prometheus_answers" / "energy_queries.json").read_text())
ANSWERS: dict[str, object] = RECORDED["answers"]
EMPTY = {"status": "success", "data": {"resultType": "vector", "result": []}}
URL = "http://prometheus.monitoring:9090"
START, END = 1000.0, 1010.0  # a 10 s window, as recorded: the queries match the recording exactly

GPU_RUN = energy_meter.JobRun("team-a", ("train-0",), START, END, "GPU", 2)
NPU_RUN = energy_meter.JobRun("team-c", ("npu-old-0",), START, END, "NPU", 2)


class Replay:
    """A fetch that answers from the recording (unknown queries: an empty vector) and logs queries."""

    def __init__(self, answers: dict[str, object] | None = None, hide: tuple[str, ...] = ()):
        self.answers = ANSWERS if answers is None else answers
        self.hide = hide
        self.queries: list[str] = []
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float) -> bytes:
        self.urls.append(url)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["query"][0]
        self.queries.append(query)
        if any(metric in query for metric in self.hide):
            return json.dumps(EMPTY).encode()
        return json.dumps(self.answers.get(query, EMPTY)).encode()


def config(**overrides: object) -> settings_mod.MeasuredEnergySettings:
    values: dict[str, object] = {"prometheus_url": URL, "min_window_seconds": 5}
    values.update(overrides)
    return settings_mod.MeasuredEnergySettings.model_validate(values)


def kwh(watts: float, seconds: float = END - START) -> float:
    return watts * seconds / 3.6e6


# -- queries ----------------------------------------------------------------------------------------


def test_dcgm_queries_try_both_label_spellings_over_the_window_in_milliseconds() -> None:
    queries = sources.SOURCES["dcgm-power"].queries("team-a", ("train-1", "train-0"), 3600.25, 15)
    assert [q.promql for q in queries] == [
        'avg_over_time(DCGM_FI_DEV_POWER_USAGE{namespace="team-a",pod=~"train-0|train-1"}[3600250ms])',
        'avg_over_time(DCGM_FI_DEV_POWER_USAGE{exported_namespace="team-a",exported_pod=~"train-0|train-1"}[3600250ms])',
    ]


def test_counters_use_increase_and_ascend_adds_a_joined_subquery() -> None:
    (kepler,) = sources.SOURCES["kepler-gpu"].queries("ns", ("p",), 60, 15)
    assert (
        kepler.promql
        == 'increase(kepler_container_gpu_joules_total{container_namespace="ns",pod_name=~"p"}[60000ms])'
    )
    direct, joined = sources.SOURCES["ascend-power"].queries("ns", ("p",), 60, 15)
    assert direct.promql == 'avg_over_time(npu_chip_info_power{namespace="ns",pod_name=~"p"}[60000ms])'
    assert joined.promql.endswith("[60000ms:15000ms])")
    assert "on(instance, id) group_left(namespace, pod_name)" in joined.promql


@pytest.mark.parametrize(
    ("pods", "regex"),
    [
        (("a.b-0",), r"a\.b-0"),  # dots are literal, dashes need nothing
        (("x", "x", "w"), "w|x"),  # sorted, unique
        (("job+1",), r"job\+1"),
    ],
)
def test_pod_names_match_literally(pods: tuple[str, ...], regex: str) -> None:
    assert sources.pod_regex(pods) == regex


def test_label_values_are_promql_string_escaped() -> None:
    assert sources.selector("namespace", 'we"ird', "pod", ("a.b",)) == 'namespace="we\\"ird",pod=~"a\\\\.b"'


# -- parsing ----------------------------------------------------------------------------------------


def test_parse_a_recorded_vector() -> None:
    query = 'avg_over_time(DCGM_FI_DEV_POWER_USAGE{namespace="team-a",pod=~"train-0"}[10000ms])'
    samples = sources.parse_vector(json.dumps(ANSWERS[query]))
    assert sorted(s.labels["gpu"] for s in samples) == ["0", "1"]
    assert all(s.value == pytest.approx(300) for s in samples)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>login</html>", "answer is not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps(ANSWERS["bad"]).encode(), "query failed: bad_data: invalid parameter"),
        (
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            "expected an instant vector, got resultType 'matrix'",
        ),
        (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{}}]}}', "malformed sample"),
    ],
)
def test_unusable_answers_say_what_was_wrong(body: bytes, message: str) -> None:
    with pytest.raises(sources.PrometheusAnswerError, match=message.replace("(", r"\(")):
        sources.parse_vector(body)


# -- measuring --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "watts"),
    [("dcgm-energy", 600), ("dcgm-power", 600), ("kepler-gpu", 600), ("kepler", 700)],
)
def test_each_source_gives_the_recorded_energy(source: str, watts: float) -> None:
    outcome = energy_meter.measure_job(config(sources=(source,)), GPU_RUN, Replay())
    assert outcome.measurement is not None, outcome.reasons
    assert outcome.measurement.source == source
    assert outcome.measurement.series == 2
    # counters: the recorded increase over 10.0001 s of real time; gauges: mean W x 10 s
    assert outcome.measurement.kwh_it == pytest.approx(kwh(watts), rel=1e-3)


def test_ascend_v5_falls_back_to_the_joined_query() -> None:
    outcome = energy_meter.measure_job(config(subquery_step_seconds=1), NPU_RUN, Replay())
    assert outcome.measurement is not None
    assert outcome.measurement.kwh_it == pytest.approx(kwh(2 * 310), rel=1e-3)
    assert outcome.reasons == ("ascend-power: no npu_chip_info_power series with labels namespace/pod_name",)


def test_fallback_order_and_reasons() -> None:
    replay = Replay(hide=("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",))
    outcome = energy_meter.measure_job(config(), GPU_RUN, replay)
    assert outcome.measurement is not None and outcome.measurement.source == "dcgm-power"
    assert outcome.reasons == (
        "dcgm-energy: no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series with labels namespace/pod",
        "dcgm-energy: no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series with labels exported_namespace/exported_pod",
    )
    assert all(f"time={END:.3f}" in url for url in replay.urls), "evaluated at the job's end"


def test_a_source_order_from_settings_is_respected() -> None:
    outcome = energy_meter.measure_job(config(sources=("kepler-gpu", "dcgm-energy")), GPU_RUN, Replay())
    assert outcome.measurement is not None and outcome.measurement.source == "kepler-gpu"


def test_partial_device_coverage_is_not_settled() -> None:
    run = energy_meter.JobRun("team-a", ("train-0",), START, END, "GPU", 4)  # 4 GPUs held, 2 reported
    outcome = energy_meter.measure_job(config(sources=("dcgm-power",)), run, Replay())
    assert outcome.measurement is None
    assert "2 DCGM_FI_DEV_POWER_USAGE series for 4 accelerators" in outcome.reasons[0]
    assert "not settling a partial reading" in outcome.reasons[0]


def test_nan_series_are_dropped_with_a_reason() -> None:
    query = 'avg_over_time(DCGM_FI_DEV_POWER_USAGE{namespace="team-a",pod=~"train-0"}[10000ms])'
    answer = json.loads(json.dumps(ANSWERS[query]))
    answer["data"]["result"][1]["value"][1] = "NaN"
    run = energy_meter.JobRun("team-a", ("train-0",), START, END, "GPU", 1)
    outcome = energy_meter.measure_job(config(sources=("dcgm-power",)), run, Replay({query: answer}))
    assert outcome.measurement is not None
    assert outcome.measurement.kwh_it == pytest.approx(kwh(300))
    assert outcome.reasons == ("dcgm-power: ignored 1 series with NaN, infinite or negative values",)


def test_query_errors_are_reasons_and_the_next_source_is_tried() -> None:
    class Broken(Replay):
        def __call__(self, url: str, timeout: float) -> bytes:
            if "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in url:
                return json.dumps(ANSWERS["bad"]).encode()
            return super().__call__(url, timeout)

    outcome = energy_meter.measure_job(config(), GPU_RUN, Broken())
    assert outcome.measurement is not None and outcome.measurement.source == "dcgm-power"
    assert "query failed: bad_data" in outcome.reasons[0]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")),
            f"Prometheus at {URL} is unreachable",
        ),
        (TimeoutError("timed out"), f"Prometheus at {URL} did not answer within 5s"),
        (
            urllib.error.HTTPError(URL, 503, "Service Unavailable", {}, None),
            "answered HTTP 503 Service Unavailable",
        ),  # type: ignore[arg-type]
    ],
)
def test_prometheus_trouble_stops_after_the_first_query(error: Exception, reason: str) -> None:
    calls = []

    def fetch(url: str, timeout: float) -> bytes:
        calls.append(url)
        raise error

    outcome = energy_meter.measure_job(config(), GPU_RUN, fetch)
    assert outcome.measurement is None
    assert len(calls) == 1
    assert len(outcome.reasons) == 1 and reason in outcome.reasons[0]


def test_a_bug_never_reaches_the_operator() -> None:
    def fetch(url: str, timeout: float) -> bytes:
        raise RuntimeError("boom")

    assert energy_meter.measure(config(), GPU_RUN, fetch) is None
    assert "unexpected error" in energy_meter.measure_job(config(), GPU_RUN, fetch).reasons[0]


@pytest.mark.parametrize(
    ("cfg", "run", "reason"),
    [
        (settings_mod.MeasuredEnergySettings(), GPU_RUN, "measured energy is off"),
        (config(), energy_meter.JobRun("ns", (), START, END, "GPU", 1), "no pods known"),
        (
            config(min_window_seconds=60),
            GPU_RUN,
            "run of 10.0s is shorter than measured_energy.min_window_seconds (60s)",
        ),
        (config(), energy_meter.JobRun("ns", ("p",), END, START, "GPU", 1), "is shorter than"),
        (
            config(),
            energy_meter.JobRun("ns", ("p",), START, END, "MLU", 1),
            "no configured source measures MLU",
        ),
    ],
)
def test_nothing_is_queried_when_it_cannot_work(
    cfg: settings_mod.MeasuredEnergySettings, run: energy_meter.JobRun, reason: str
) -> None:
    replay = Replay()
    outcome = energy_meter.measure_job(cfg, run, replay)
    assert outcome.measurement is None and replay.queries == []
    assert reason in outcome.reasons[0]


def test_implausible_power_is_refused() -> None:
    outcome = energy_meter.measure_job(
        config(sources=("dcgm-power",), max_watts_per_accelerator=250), GPU_RUN, Replay()
    )
    assert outcome.measurement is None
    assert "300 W per accelerator is above the plausible 250 W" in outcome.reasons[0]


# -- settling ---------------------------------------------------------------------------------------


def test_settlement_applies_pue_to_measured_and_keeps_estimates() -> None:
    measured = energy_meter.Measurement(kwh_it=10.0, source="dcgm-energy", detail="d", series=8)
    assert energy_meter.settlement(measured, estimated_kwh=14.0, pue=1.2) == energy_meter.Settlement(
        kwh=12.0, source="measured", detail="d; x PUE 1.2"
    )
    fallback = energy_meter.settlement(None, estimated_kwh=14.0, pue=1.2)
    assert (fallback.kwh, fallback.source) == (14.0, "estimate")


def test_measured_energy_settles_the_ledger() -> None:
    ledger = energy_ledger.EnergyLedger([("guian-ai", "Asia/Shanghai", 1.0, "Day")])
    ledger.roll(END)
    job = ("team-a", "llm-finetune")
    ledger.reserve("guian-ai", job, 0.5)
    settled = energy_meter.settlement(energy_meter.measure(config(), GPU_RUN, Replay()), 0.5, pue=1.15)
    ledger.settle(job, settled.kwh)
    account = ledger.account("guian-ai")
    assert account.reserved_kwh == 0
    assert account.used_kwh == pytest.approx(kwh(600) * 1.15, rel=1e-3)
    assert math.isclose(account.remaining_kwh, 1.0 - account.used_kwh)


def test_settings_refuse_unknown_sources() -> None:
    with pytest.raises(pydantic.ValidationError, match="sources"):
        settings_mod.MeasuredEnergySettings.model_validate({"sources": ["dcgm", "kepler-gpu"]})
    assert settings_mod.Settings().measured_energy.prometheus_url is None
