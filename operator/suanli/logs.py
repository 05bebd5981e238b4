"""The operator's log output: text for a terminal, or JSON lines for Loki, Elasticsearch and friends.

`suanli run --log-format json` (or $SUANLI_LOG_FORMAT=json; the chart's `logFormat`) writes one
JSON object per line on stderr:

    {"time": "2026-12-02T05:20:01.250Z", "level": "WARNING", "logger": "suanli.scheduler.binder",
     "message": "...", "namespace": "team-a", "name": "train-1", "kind": "ComputeJob"}

`namespace`, `name` and `kind` are there when the record is about one object: kopf's per-object
loggers put it in the record's `k8s_ref`, and so do Suanli's own log calls through `about()`.
An exception is one `exc_info` field (its traceback as text), never extra lines. Any other
`extra=` field of a record is passed through.

The JSON is written by python-json-logger (which kopf already depends on for its own JSON logs).
"""

from __future__ import annotations

import datetime
import logging
import sys
from typing import Any

from pythonjsonlogger import core as pjl_core
from pythonjsonlogger import json as pjl_json

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attributes kopf's ObjectLogger adds; never copied as they are (k8s_ref is unpacked).
_KOPF_ATTRS = ("k8s_ref", "k8s_skip", "settings")
_FIRST = ("time", "level", "logger", "message", "namespace", "name", "kind")
# Line breaks that json.dumps leaves raw in a string (it escapes only U+0000..U+001F), but that
# some line readers split on (Python's splitlines, older JavaScript): escaped, one record one line.
_LINE_BREAKS = str.maketrans({"\u0085": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def about(key: tuple[str, str], kind: str = "ComputeJob") -> dict[str, Any]:
    """The `extra=` of a log call about one object, keyed (namespace, name) as the cache keys jobs:
    `LOG.info("%s/%s: ...", *key, extra=logs.about(key))`. Same shape as kopf's per-object loggers."""
    namespace, name = key
    return {"k8s_ref": {"kind": kind, "namespace": namespace, "name": name}}


def rfc3339(created: float) -> str:
    """A record's time as RFC 3339 in UTC with milliseconds: 2026-12-02T05:20:01.250Z."""
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class JsonFormatter(pjl_json.JsonFormatter):
    """One JSON object per record: time, level, logger, message, the object's namespace/name/kind
    when there is one, exc_info/stack_info as text, then any other extra field."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=[*pjl_core.RESERVED_ATTRS, *_KOPF_ATTRS],
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_data, record, message_dict)
        log_data["time"] = rfc3339(record.created)
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            for field in ("namespace", "name", "kind"):
                if ref.get(field):
                    log_data[field] = ref[field]

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """The fixed fields first, so a line reads well in a terminal too."""
        first = {field: log_data[field] for field in _FIRST if field in log_data}
        return first | {k: v for k, v in log_data.items() if k not in first}

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        return super().serialize_log_record(log_data).translate(_LINE_BREAKS)


def configure(log_format: str, verbose: bool = False) -> None:
    """Send every log record to stderr in the given format (text or json), replacing any handler."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use {' or '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
