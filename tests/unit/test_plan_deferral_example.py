"""Issue 5's `suanli plan --now` check: on the example fleet's day/night carbon schedule, a job with
a loose deadline is Deferred to the clean window and its twin with a tight deadline is bound now.

crds/examples/jobs.yaml has the loose one (solar-batch); the tight twin is
crds/examples/deferral/solar-urgent.yaml (kept out of the live examples: its deadline is in the past
for a real cluster).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from suanli import cli
from suanli.kube import objects as kobj

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-06-01T15:30:00Z"  # 23:30 in Zhongwei (Asia/Shanghai): night on the Northwest grid


@pytest.fixture(scope="module")
def planned() -> dict[str, dict]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["plan", "-f", str(REPO / "crds" / "examples"), "-f", str(REPO / "crds" / "examples" / "deferral"),
                         "-o", "json", "--now", NOW])
    assert code == 0, out.getvalue()
    return {j["name"]: j for j in json.loads(out.getvalue())["jobs"]}


def test_loose_deadline_waits_for_the_solar_window(planned):
    job = planned["solar-batch"]
    assert job["phase"] == "Deferred", job["message"]
    start = kobj.parse_time(job["plannedStart"])
    # 10:00-16:00 in Asia/Shanghai is 02:00-08:00Z; the job (~4.7 h on K100) starts inside it.
    assert kobj.parse_time("2026-06-02T02:00:00Z") <= start <= kobj.parse_time("2026-06-02T08:00:00Z")
    assert "less carbon" in job["message"]
    assert job["binding"]["center"] == "zhongwei-dc"


def test_tight_deadline_is_bound_now_on_the_same_schedule(planned):
    job = planned["solar-urgent"]
    assert job["phase"] == "Bound", job["message"]
    assert (job["binding"]["center"], job["binding"]["pool"]) == ("zhongwei-dc", "dcu-k100")
    assert job.get("plannedStart") is None
    finish = kobj.parse_time(NOW) + job["estimates"]["runtimeSeconds"] + job["estimates"]["transferSeconds"]
    assert finish <= kobj.parse_time("2026-06-01T22:00:00Z")  # it could not wait for 02:00Z and still make it
