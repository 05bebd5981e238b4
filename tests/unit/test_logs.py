"""`suanli run --log-format json`: one JSON object per line, the object's namespace/name when there is one."""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suanli import cli, logs


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, logging.Logger]]:
    """A logger whose records go through the JSON formatter into a string (not to the root logger)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("suanli.test-logs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield out, logger
    logger.removeHandler(handler)
    logger.propagate = True


def _lines(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_plain_record_has_time_level_logger_message(capture: tuple[io.StringIO, logging.Logger]) -> None:
    out, logger = capture
    logger.info("cache primed: %d centers", 3)
    [line] = _lines(out)
    assert list(line) == ["time", "level", "logger", "message"]
    assert (line["level"], line["logger"], line["message"]) == ("INFO", "suanli.test-logs", "cache primed: 3 centers")
    moment = datetime.datetime.fromisoformat(line["time"])
    assert line["time"].endswith("Z") and moment.utcoffset() == datetime.timedelta(0)
    assert abs((datetime.datetime.now(datetime.UTC) - moment).total_seconds()) < 60


def test_a_record_about_a_job_names_it(capture: tuple[io.StringIO, logging.Logger]) -> None:
    out, logger = capture
    key = ("team-a", "train-1")
    logger.warning("%s/%s: could not requeue", *key, extra=logs.about(key))
    [line] = _lines(out)
    assert line["namespace"] == "team-a" and line["name"] == "train-1" and line["kind"] == "ComputeJob"
    assert line["message"] == "team-a/train-1: could not requeue"
    assert "k8s_ref" not in line


def test_kopf_per_object_loggers_carry_the_object(capture: tuple[io.StringIO, logging.Logger]) -> None:
    """kopf's own ObjectLogger (what kopf hands a handler as `logger`): a cluster-scoped center has a name only."""
    import kopf
    from kopf._core.actions import loggers as kopf_loggers

    out, logger = capture
    kopf_logger = logging.getLogger("kopf.objects")
    handler = logger.handlers[0]
    kopf_logger.addHandler(handler)
    level = kopf_logger.level
    kopf_logger.setLevel(logging.INFO)
    try:
        settings = kopf.OperatorSettings()
        center = {"apiVersion": "suanli.io/v1alpha1", "kind": "ComputeCenter", "metadata": {"name": "guian-ai"}}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p-0", "namespace": "team-a", "uid": "u1"}}
        kopf_loggers.LocalObjectLogger(body=kopf.Body(center), settings=settings).warning("no nodes yet")
        kopf_loggers.LocalObjectLogger(body=kopf.Body(pod), settings=settings).info("seen")
    finally:
        kopf_logger.removeHandler(handler)
        kopf_logger.setLevel(level)
    center_line, pod_line = _lines(out)
    assert center_line["name"] == "guian-ai" and center_line["kind"] == "ComputeCenter"
    assert "namespace" not in center_line, "a cluster-scoped object has no namespace: none is made up"
    assert (pod_line["namespace"], pod_line["name"], pod_line["kind"]) == ("team-a", "p-0", "Pod")
    assert not {"k8s_ref", "k8s_skip", "settings"} & set(center_line), "kopf's internals stay out of the line"


def test_an_exception_is_one_field_not_extra_lines(capture: tuple[io.StringIO, logging.Logger]) -> None:
    out, logger = capture
    try:
        raise RuntimeError("API server said 500")
    except RuntimeError:
        logger.exception("the scheduler loop ended")
    assert len(out.getvalue().splitlines()) == 1
    [line] = _lines(out)
    assert line["level"] == "ERROR" and line["message"] == "the scheduler loop ended"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].endswith("RuntimeError: API server said 500")


def test_non_ascii_and_control_characters_stay_on_one_line(capture: tuple[io.StringIO, logging.Logger]) -> None:
    out, logger = capture
    message = 'Gui\'an "贵安" 智算中心\nline 2\ttab \\ \u2028 \u2029 \x85 \x0b'
    logger.info("%s", message, extra={"cluster": "宁夏"})
    text = out.getvalue()
    assert len(text.splitlines()) == 1 and "贵安" in text, "UTF-8 as is, not \\u escapes"
    [line] = _lines(out)
    assert line["message"] == message and line["cluster"] == "宁夏"


def test_configure_replaces_the_handlers_and_sets_the_level() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("json", verbose=True)
        assert root.level == logging.DEBUG
        assert [type(h.formatter) for h in root.handlers] == [logs.JsonFormatter]
        logs.configure("text")
        assert root.level == logging.INFO and len(root.handlers) == 1
        assert type(root.handlers[0].formatter) is logging.Formatter
        with pytest.raises(ValueError, match="use text or json"):
            logs.configure("xml")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_the_flag_defaults_to_text_then_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUANLI_LOG_FORMAT", raising=False)
    assert cli.build_parser().parse_args(["run"]).log_format == "text"
    assert cli.build_parser().parse_args(["run", "--log-format", "json"]).log_format == "json"
    monkeypatch.setenv("SUANLI_LOG_FORMAT", "json")
    assert cli.build_parser().parse_args(["run"]).log_format == "json"


def test_a_bad_format_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SUANLI_LOG_FORMAT", "logfmt")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run"])
    assert exit_info.value.code == 2
    assert "$SUANLI_LOG_FORMAT='logfmt' is not a log format: use text or json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "status", "says"),
    [
        (["--kubeconfig", "/nonexistent/kubeconfig"], 2, "--kubeconfig /nonexistent/kubeconfig does not exist"),
        (["--config", "/nonexistent/config.yaml"], 2, "cannot use --config /nonexistent/config.yaml"),
    ],
)
def test_a_failed_start_is_json_too(argv: list[str], status: int, says: str) -> None:
    """The real `suanli run` process, stopped before it reaches any API server: stderr is JSON lines only."""
    env = {**os.environ, "SUANLI_LOG_FORMAT": "json"}
    proc = subprocess.run(
        [sys.executable, "-m", "suanli.cli", "run", "--metrics-port", "0", "--health-port", "0", *argv],
        capture_output=True, text=True, timeout=60, check=False, env=env, cwd=Path(__file__).parent,
    )
    assert proc.returncode == status, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert lines and proc.stdout == ""
    assert any(line["level"] == "ERROR" and says in line["message"] for line in lines), lines
