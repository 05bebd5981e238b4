"""The dashboard's Geomap panel is wired to what its queries return (no Grafana here to render it): the
fields its marker layer reads are the columns its queries and transformations produce. That the queries
return data is tests/e2e/test_operator_metrics.py's job."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.tools import helmkit

DASHBOARD = json.loads((helmkit.CHART / "files" / "dashboard.json").read_text(encoding="utf-8"))


def geomap() -> dict[str, Any]:
    (panel,) = [p for p in DASHBOARD["panels"] if p["type"] == "geomap"]
    return panel


def test_the_marker_layer_reads_the_columns_the_queries_and_transformations_make() -> None:
    panel = geomap()
    targets = {t["refId"]: t for t in panel["targets"]}
    assert all(t["format"] == "table" and t["instant"] for t in targets.values())
    steps = {t["id"]: t["options"] for t in panel["transformations"]}
    assert list(steps) == ["joinByField", "organize", "convertFieldType"]  # join, name, then make numbers
    join = steps["joinByField"]["byField"]
    renamed = steps["organize"]["renameByName"]
    assert set(renamed) == {f"Value #{ref}" for ref in targets}  # Grafana names a table's value "Value #<refId>"
    (layer,) = panel["options"]["layers"]
    style = layer["config"]["style"]
    assert layer["type"] == "markers" and layer["location"]["mode"] == "coords"
    assert {style["size"]["field"], style["color"]["field"]} == set(renamed.values())
    assert style["text"]["field"] == join == "center"

    # The coordinates are labels that only the "free" query carries (one column each after the join),
    # converted from the label's text to numbers.
    coords = {layer["location"]["latitude"], layer["location"]["longitude"]}
    assert coords == {"latitude", "longitude"}
    carried = {
        ref: set(re.findall(r"\w+", m[0])) for ref, t in targets.items()
        for m in [re.search(r"group_left \(([^)]*)\)", t["expr"]) or [""]]
    }
    assert coords <= carried["free"] and not coords & carried["carbon"], carried
    converted = {c["targetField"] for c in steps["convertFieldType"]["conversions"] if c["destinationType"] == "number"}
    assert converted == coords
    assert all('latitude!=""' in t["expr"] for t in targets.values())  # centers without a position stay off
