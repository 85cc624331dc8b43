"""Offload's PromQL queries, written once in k8s/grafana/queries.yaml, and what is made from
them: the Grafana dashboard (charts/offload/files/offload-dashboard.json) and the query table of
docs/observability.md. `python -m tests.telemetry.dashboard` (make dashboard) rewrites both;
test_dashboard.py checks they are current, test_prometheus.py runs every query.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
QUERIES = REPO / "k8s" / "grafana" / "queries.yaml"
DASHBOARD = REPO / "charts" / "offload" / "files" / "offload-dashboard.json"
DOCS = REPO / "docs" / "observability.md"
BEGIN, END = "<!-- queries:begin -->", "<!-- queries:end -->"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
RATE_INTERVAL = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    name: str
    expr: str
    legend: str
    panel: str

    def promql(self, window: str) -> str:
        """The query as Prometheus takes it outside Grafana: `window` for Grafana's rate window."""
        return self.expr.replace(RATE_INTERVAL, window)


def spec() -> dict[str, Any]:
    return yaml.safe_load(QUERIES.read_text())


def queries() -> dict[str, Query]:
    out: dict[str, Query] = {}
    for row in spec()["rows"]:
        for panel in row["panels"]:
            for q in panel["queries"]:
                if q["name"] in out:
                    raise ValueError(f"{QUERIES}: query name {q['name']!r} is used twice")
                out[q["name"]] = Query(q["name"], " ".join(q["expr"].split()), q["legend"], panel["title"])
    return out


def _place(heights: list[int], width: int) -> tuple[int, int]:
    """Where Grafana's grid would settle a panel: the highest free spot, leftmost on a tie."""
    spots = [(max(heights[x:x + width]), x) for x in range(GRID_WIDTH - width + 1)]
    y, x = min(spots)
    return x, y


def _panel(panel: dict[str, Any], panel_id: int, grid: dict[str, int]) -> dict[str, Any]:
    kind = panel.get("type", "timeseries")
    defaults: dict[str, Any] = {"unit": panel["unit"]}
    if kind == "stat":
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "green", "value": None},
                                                                {"color": "red", "value": panel["red_from"]}]}
        options: dict[str, Any] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
    else:
        options = {"legend": {"displayMode": "list", "placement": "bottom"}}
    targets = [{"datasource": DATASOURCE, "refId": chr(ord("A") + i), "expr": " ".join(q["expr"].split()),
                "legendFormat": q["legend"]} for i, q in enumerate(panel["queries"])]
    return {"type": kind, "id": panel_id, "title": panel["title"], "description": " ".join(panel["description"].split()),
            "datasource": DATASOURCE, "gridPos": grid, "fieldConfig": {"defaults": defaults, "overrides": []},
            "options": options, "targets": targets}


def dashboard() -> dict[str, Any]:
    s = spec()
    panels: list[dict[str, Any]] = []
    top = 0
    for row in s["rows"]:
        panels.append({"type": "row", "id": len(panels) + 1, "title": row["title"], "collapsed": False,
                       "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": top}, "panels": []})
        heights = [top + 1] * GRID_WIDTH
        for panel in row["panels"]:
            w, h = panel.get("width", 8), panel.get("height", 8)
            x, y = _place(heights, w)
            heights[x:x + w] = [y + h] * w
            panels.append(_panel(panel, len(panels) + 1, {"h": h, "w": w, "x": x, "y": y}))
        top = max(heights)
    return {
        "title": s["title"], "uid": s["uid"], "description": s["description"], "tags": ["offload"],
        "editable": True, "schemaVersion": 39, "version": 1, "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s", "timezone": "browser",
        "templating": {"list": [{"name": "datasource", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "annotations": {"list": []}, "links": [], "panels": panels,
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def docs_table() -> str:
    lines = ["| Query | Panel | PromQL |", "| --- | --- | --- |"]
    for q in queries().values():
        lines.append(f"| `{q.name}` | {q.panel} | `{q.expr.replace('|', chr(92) + '|')}` |")
    return "\n".join(lines) + "\n"


def current_docs() -> str:
    text = DOCS.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + docs_table() + text[end:]


if __name__ == "__main__":
    DASHBOARD.write_text(dashboard_text())
    DOCS.write_text(current_docs())
    sys.stdout.write(f"{DASHBOARD.relative_to(REPO)} and the query table of {DOCS.relative_to(REPO)} updated\n")
